"""Procedural tasks (fipo_bench.evals.procedural, procedural_check): rg: dataset names, splits, grading by
reasoning-gym's own scorers, the guard around them, and the curriculum. Needs the `tasks` extra
(reasoning-gym); .ci/run installs it, and without it these tests skip, except in CI."""

import hashlib
import os
import sys
import textwrap

import pytest

pytest.importorskip("reasoning_gym", reason="the procedural-task tests need: pip install -e '.[tasks]'")

import reasoning_gym  # noqa: E402

from fipo_bench.config import ConfigError, RunConfig, build_config  # noqa: E402
from fipo_bench.evals import check_answer, check_answers, load_dataset  # noqa: E402
from fipo_bench.evals import procedural_check as pc  # noqa: E402
from fipo_bench.evals.procedural import (  # noqa: E402
    Curriculum,
    Schedule,
    generate,
    label,
    parse_spec,
    split_of,
)
from fipo_bench.evals.procedural_check import ProceduralGold, extract_procedural_answer, refusal  # noqa: E402


def entries(problems):
    return [(p.id, p.problem, str(p.answer), p.answer.entry) for p in problems]


# -- names, options, errors -----------------------------------------------------------------------------


def test_options_are_coerced_to_the_config_field_types_and_reach_the_generator():
    spec = parse_spec("rg:chain_sum?min_terms=3&max_terms=3&allow_negation=true&seed=7&size=30")
    assert (spec.task, spec.seed, spec.size, spec.level) == ("chain_sum", 7, 30, None)
    assert spec.config() == {"min_terms": 3, "max_terms": 3, "allow_negation": True, "seed": 7, "size": 30}
    for p in generate(spec, "train"):
        assert p.answer.entry["metadata"]["num_terms"] == 3
        assert p.answer.config["allow_negation"] is True
    lists = parse_spec("rg:basic_arithmetic?operators=+,-&format_style=natural").config()
    assert lists["operators"] == ["+", "-"] and lists["format_style"] == "natural"
    assert parse_spec("rg:countdown?operators=+,*").config()["operators"] == ("+", "*")


@pytest.mark.parametrize("name, message", [
    ("rg:chain_sun", "unknown reasoning-gym task 'chain_sun'; did you mean 'chain_sum'"),
    ("rg:chain_sum?max_term=3", "unknown option 'max_term' for task 'chain_sum'; did you mean 'max_terms'"),
    ("rg:chain_sum?min_terms=two", "option 'min_terms': invalid literal for int()"),
    ("rg:chain_sum?allow_negation=maybe", "option 'allow_negation': expected true or false"),
    ("rg:basic_arithmetic?format_style=fancy", "option 'format_style': expected one of simple, natural"),
    ("rg:chain_sum?min_terms=5&max_terms=2",
     "invalid options for 'chain_sum': max_terms must be >= min_terms"),
    ("rg:chain_sum?seed=1&seed=2", "option 'seed' is given twice"),
    ("rg:chain_sum?size=0", "option 'size': expected an integer >= 1"),
    ("rg:chain_sum?level=99", "option 'level': expected 0 to 10 for 'chain_sum', got 99"),
    ("rg:acre?level=0", "reasoning-gym has no curriculum for 'acre'"),
    ("rg:chain_sum?min_terms", "expected options as key=value pairs joined by '&', got 'min_terms'"),
    ("rg:chain_sum?min_terms=", "option 'min_terms': invalid literal for int()"),
])
def test_bad_names_are_clear_errors(name, message):
    with pytest.raises(ValueError) as error:
        parse_spec(name)
    assert message in str(error.value) and name in str(error.value)


def test_a_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # import reasoning_gym -> ImportError
    with pytest.raises(ImportError, match=r"the `tasks` extra.*pip install -e '\.\[tasks\]'"):
        load_dataset("rg:chain_sum")
    cfg = RunConfig(model="m", dataset="rg:chain_sum", eval_datasets=("rg:chain_sum",))
    from fipo_bench import tasks

    monkeypatch.setattr(tasks, "_resolved_model", lambda cfg: "m")
    monkeypatch.setattr("fipo_bench.models.load_tokenizer", lambda path: None)
    with pytest.raises(ConfigError, match=r"config field 'dataset': rg: datasets need the `tasks` extra"):
        tasks._dataset_data(cfg)


def test_a_scoring_worker_without_reasoning_gym_names_the_extra(tmp_path, monkeypatch):
    fake = tmp_path / "reasoning_gym"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('No module named reasoning_gym')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    pc.reset_scorer()
    gold = load_dataset("rg:chain_sum?size=8")[0].answer
    try:
        with pytest.raises(ImportError, match=r"pip install -e '\.\[tasks\]'"):
            check_answers(["<answer>1</answer>"], [gold])
    finally:
        pc.reset_scorer()


# -- generation and splits ------------------------------------------------------------------------------


def test_generation_is_deterministic_in_the_seed():
    a = entries(load_dataset("rg:knights_knaves?size=40&seed=3"))
    assert a == entries(load_dataset("rg:knights_knaves?size=40&seed=3"))
    assert a != entries(load_dataset("rg:knights_knaves?size=40&seed=4"))
    # The first problems do not depend on how many are asked for (generation stops at the limit).
    assert entries(load_dataset("rg:knights_knaves?size=40&seed=3", limit=3)) == a[:3]
    # The same generator, called directly, gives the same questions at the same indices.
    direct = reasoning_gym.create_dataset("knights_knaves", seed=3, size=40)
    assert all(direct[int(i)]["question"] == q and direct[int(i)]["answer"] == g for i, q, g, _ in a)


def test_train_and_eval_never_share_a_question_across_seeds_and_levels():
    # A generator of few distinct questions: repeats happen, and are kept once.
    name = "rg:chain_sum?min_terms=2&max_terms=2&min_digits=1&max_digits=1&size=400"
    train, held_out = load_dataset(name, split="train"), load_dataset(name, split="eval")
    questions = [p.problem for p in train + held_out]
    assert len(questions) == len(set(questions))
    generated = {reasoning_gym.create_dataset("chain_sum", **parse_spec(name).config())[i]["question"]
                 for i in range(400)}
    assert set(questions) == generated  # every distinct question, in exactly one split
    for p in held_out:
        digest = hashlib.sha256(p.problem.encode()).digest()
        assert int.from_bytes(digest[:8], "little") % 4 == 0
    assert 0.15 < len(held_out) / len(questions) < 0.35  # about a quarter held out

    other_train = {p.problem for seed in (1, 2) for level in (0, 1)
                   for p in load_dataset(f"rg:chain_sum?seed={seed}&level={level}&size=300", split="train")}
    other_eval = {p.problem for seed in (1, 2) for level in (0, 1)
                  for p in load_dataset(f"rg:chain_sum?seed={seed}&level={level}&size=300")}
    assert other_train and other_eval and not other_train & other_eval
    assert not other_train & {p.problem for p in held_out}
    assert all(split_of(q) == "train" for q in other_train)


def test_levels_follow_the_task_curriculum_and_options_override_them():
    easy, hard = parse_spec("rg:chain_sum?level=0").config(), parse_spec("rg:chain_sum?level=3").config()
    curriculum = reasoning_gym.factory.create_curriculum("chain_sum")
    curriculum.set_global_level(3)
    reference = curriculum.generate_configuration({"seed": 0, "size": 1000})
    assert (hard["min_terms"], hard["max_terms"]) == (reference.min_terms, reference.max_terms)
    assert hard["max_terms"] > easy["max_terms"]
    assert parse_spec("rg:chain_sum?level=3&max_terms=9").config()["max_terms"] == 9


def test_labels_are_plain_directory_names():
    assert label("rg:chain_sum?min_terms=2&max_terms=8") == "rg-chain_sum-min_terms=2-max_terms=8"
    assert label("rg:chain_sum") == "rg-chain_sum"


# -- extraction and grading -----------------------------------------------------------------------------


@pytest.mark.parametrize("response, expected", [
    ("<answer>7</answer>", "7"),
    ("<answer> 7 </answer> ... <answer>8</answer>", "8"),  # the last tags
    ("Answer: 5\n<answer>7</answer>\n\\boxed{9}", "7"),  # tags first
    ("\\boxed{9}\nAnswer: 5", "5"),  # then the Answer: line
    ("**Answer:** 5", "5"),
    ("**Answer:**\n42", "42"),  # DAPO's `Answer:\s*`: the value on the next line
    ("Final Answer: 12", "12"),
    ("Answer:\n\\boxed{7}", "7"),  # a boxed value on the Answer: line is the box's content
    ("Answer:\n\n\\boxed{ 7 }", "7"),
    ("Answer: \\boxed{1} and \\boxed{2}", "\\boxed{1} and \\boxed{2}"),  # no single box: the line
    ("<answer>  </answer>\nAnswer: 6", "6"),  # an empty stage leaves it to the next
    ("so \\boxed{9}", "9"),  # then a box
    ("<answer>7 and no closing tag\nAnswer: 6", "6"),
    ("<answer></answer>", None),  # empty tags are no answer
    ("the result is 7", None),
    ("<answer>" + "1" * 5000 + "</answer>", None),  # not an answer
])
def test_extraction_order(response, expected):
    assert extract_procedural_answer(response) == expected


def reference_score(task, config, response, entry):
    dataset = reasoning_gym.create_dataset(task, **config)
    return dataset.score_answer(extract_procedural_answer(response), entry)


def test_scores_are_reasoning_gyms_and_only_full_marks_are_correct():
    cases = []
    for name in ("rg:chain_sum?size=12", "rg:countdown?size=4", "rg:knights_knaves?size=12"):
        for p in load_dataset(name)[:2]:
            gold = p.answer
            cases += [(f"<answer>{gold}</answer>", gold), (f"Answer: {gold}", gold),
                      (f"<answer>{gold}0</answer>", gold), (f"<answer>1{gold}</answer>", gold),
                      ("<answer>no idea</answer>", gold), ("I give up.", gold)]
    results = check_answers([r for r, _ in cases], [g for _, g in cases])
    scores = []
    for (response, gold), result in zip(cases, results, strict=True):
        expected = reference_score(gold.task, gold.config, response, gold.entry)
        assert result.score == pytest.approx(expected), (response, gold.task)
        assert result.correct == (expected == 1.0), (response, result)
        assert result.verdict == ("no_answer" if extract_procedural_answer(response) is None
                                  else "correct" if expected == 1.0 else "incorrect")
        scores.append(result.score)
    assert any(0 < s < 1 for s in scores), "the cases need partial credit, which must not count as correct"
    assert any(s == 1.0 for s in scores)


def test_math_and_procedural_golds_grade_side_by_side_in_order():
    gold = load_dataset("rg:chain_sum?size=8")[0].answer
    results = check_answers(["Answer: 12", f"<answer>{gold}</answer>", "Answer: 13"], ["12", gold, "12"])
    assert [(r.verdict, r.score) for r in results] == [("correct", None), ("correct", 1.0),
                                                       ("incorrect", None)]
    assert check_answer(f"<answer>{gold}</answer>", gold).score == 1.0


def test_a_procedural_gold_is_its_answer_string_and_pickles_with_its_entry():
    import pickle

    gold = load_dataset("rg:chain_sum?size=8")[0].answer
    assert isinstance(gold, str) and gold == gold.entry["answer"]
    copy = pickle.loads(pickle.dumps(gold))
    assert (copy, copy.task, copy.config, copy.entry) == (gold, gold.task, gold.config, gold.entry)
    assert isinstance(ProceduralGold("t", {}, {"answer": None}), str)


@pytest.mark.parametrize("source, refused", [
    ("94*4 - 61 - 6", None),
    ("Integer (94 )*Integer (4 )-Integer (61 )", None),
    ("from sympy import *", None),
    ("[[1, 2], [3, 4]]", None),
    ("x**3/3 + sin(x) + C", None),
    ("__import__('os').system('true')", "a double underscore"),
    ("eval(chr(49))", "'eval'"),
    ("getattr", "'getattr'"),
    ("(1).real", "an attribute access"),
    ("print (1)", "a call of 'print'"),
    ("lambda: 0", "'lambda'"),
    ("import os", "'import'"),
])
def test_the_guard_refuses_code(source, refused):
    assert refusal(source) == refused


def test_answers_that_would_run_code_are_refused_in_the_worker(tmp_path):
    gold = load_dataset("rg:countdown?size=4")[0].answer  # its scorer runs sympy's parse_expr on answers
    marker = tmp_path / "pwned"
    attacks = [f"<answer>__import__('pathlib').Path('{marker}').touch()</answer>",
               "<answer>eval(chr(95)+chr(95))</answer>", f"<answer>open('{marker}', 'w')</answer>"]
    results = check_answers([*attacks, f"<answer>{gold}</answer>"], [gold] * 4)
    assert [(r.verdict, r.score) for r in results] == [("error", None)] * 3 + [("correct", 1.0)]
    assert not marker.exists()


@pytest.mark.parametrize("task", ["binary_matrix", "spiral_matrix", "string_insertion", "countdown",
                                  "polynomial_multiplication", "simple_integration", "number_sorting"])
def test_the_guard_passes_the_gold_answers_of_tasks_whose_scorers_evaluate(task):
    problems = load_dataset(f"rg:{task}?size=40", limit=3)
    results = check_answers([f"<answer>{p.answer}</answer>" for p in problems], [p.answer for p in problems])
    assert [(r.verdict, r.score) for r in results] == [("correct", 1.0)] * len(problems)


def test_a_scorer_that_hangs_times_out_and_the_next_answer_is_graded():
    gold = load_dataset("rg:countdown?size=4")[0].answer
    slow = check_answers(["<answer>9**9**9**9</answer>"], [gold], timeout=0.5)[0]  # a 370M-digit power
    assert (slow.verdict, slow.correct, slow.score) == ("timeout", False, None)
    assert check_answers([f"<answer>{gold}</answer>"], [gold])[0].verdict == "correct"


# -- curriculum and configuration -----------------------------------------------------------------------


def run_schedule(curriculum, accuracies):
    return [curriculum.end_step(a)["curriculum_level"] for a in accuracies]


def test_curriculum_every_n_steps_caps_at_the_last_level():
    spec = parse_spec("rg:chain_sum?size=40")
    curriculum = Curriculum(spec, Schedule.from_config({"every": 2, "max_level": 2}))
    assert run_schedule(curriculum, [0.0] * 8) == [0, 0, 1, 1, 2, 2, 2, 2]


def test_curriculum_by_accuracy_and_resume():
    spec = parse_spec("rg:chain_sum?size=40&level=1")
    schedule = Schedule.from_config({"accuracy": 0.5, "window": 2})
    accuracies = [0.2, 0.9, 0.6, 0.1, 0.9, 0.9, 0.0, 0.5, 0.5]
    # Hand-derived: start at level 1; after step 2, (0.2, 0.9) average 0.55 -> level 2 from step 3; at level
    # 2, (0.6, 0.1) no, (0.1, 0.9) = 0.5 -> level 3 from step 6; then (0.9, 0.0) no, (0.0, 0.5) no,
    # (0.5, 0.5) yes: level 4 after the last step.
    expected = [1, 1, 2, 2, 2, 3, 3, 3, 3]
    assert run_schedule(Curriculum(spec, schedule), accuracies) == expected
    first = Curriculum(spec, schedule)
    head = run_schedule(first, accuracies[:4])
    resumed = Curriculum(spec, schedule)
    resumed.load_state_dict(first.state_dict())
    assert head + run_schedule(resumed, accuracies[4:]) == expected
    assert resumed.state_dict() == {"level": 4, "history": []}


def test_curriculum_problems_come_from_the_current_levels_train_split():
    spec = parse_spec("rg:chain_sum?size=60")
    curriculum = Curriculum(spec, Schedule.from_config({"every": 1}), keep=lambda p: len(p.problem) < 200)
    before = curriculum.problems(list(range(100)))
    curriculum.end_step(0.0)
    after = curriculum.problems([0, 1, 2])
    assert before[0] is before[len(curriculum.pool(0))]  # indices wrap around the level's problems
    assert {p.answer.config["max_terms"] for p in before} == {spec.config(0)["max_terms"]}
    assert {p.answer.config["max_terms"] for p in after} == {spec.config(1)["max_terms"]}
    assert all(split_of(p.problem) == "train" for p in before + after)


@pytest.mark.parametrize("value, message", [
    ({"every": 0}, "'every': expected an integer >= 1"),
    ({"accuracy": 0.5}, "'accuracy' needs 'window'"),
    ({"every": 2, "accuracy": 0.5, "window": 2}, "exactly one of"),
    ({"accuracy": 1.5, "window": 2}, "'accuracy': expected a number in (0, 1]"),
    ({"evrey": 2}, "unknown key(s) ['evrey']"),
])
def test_bad_curriculum_configs_name_the_field(value, message):
    with pytest.raises(ConfigError) as error:
        RunConfig(model="m", dataset="rg:chain_sum", eval_datasets=("aime24",), curriculum=value)
    assert "config field 'curriculum'" in str(error.value) and message in str(error.value)


def test_curriculum_needs_a_procedural_dataset_and_openrlhf_refuses_rg():
    with pytest.raises(ConfigError, match="config field 'curriculum'"):
        RunConfig(model="m", dataset="train.jsonl", eval_datasets=("aime24",), curriculum={"every": 2})
    with pytest.raises(ConfigError, match="config field 'dataset': 'rg:chain_sum' is a procedural task"):
        RunConfig(model="m", dataset="rg:chain_sum", eval_datasets=("aime24",), backend="openrlhf")
    with pytest.raises(ConfigError, match="config field 'eval_datasets'.*use --backend local"):
        RunConfig(model="m", dataset="x.jsonl", eval_datasets=("rg:chain_sum",), backend="openrlhf")


def test_a_procedural_training_set_is_evaluated_on_its_own_eval_split_by_default():
    cfg = build_config(options={"model": "m.gguf", "dataset": "rg:chain_sum?max_terms=4"})
    assert cfg.preset == "small-model" and cfg.eval_datasets == ("rg:chain_sum?max_terms=4",)
    given = build_config(options={"model": "m.gguf", "dataset": "rg:chain_sum"},
                         sets=["eval_datasets=aime24"])
    assert given.eval_datasets == ("aime24",)
    curriculum = build_config(options={"model": "m", "dataset": "rg:chain_sum"},
                              sets=["curriculum.every=5"])
    assert curriculum.curriculum == {"every": 5}


def test_the_tags_template_asks_for_answer_tags():
    from fipo_bench.evals import format_prompt

    prompt = format_prompt("What is {x}?", "tags")
    assert prompt.startswith("What is {x}?") and "<answer>" in prompt and "</answer>" in prompt


@pytest.fixture(autouse=True, scope="module")
def _stop_worker():
    yield
    pc.reset_scorer()


def test_module_docstring_lists_the_eval_using_scorers():
    # The safety note names the scorers that evaluate answers; a new version may add more.
    import inspect

    for task in ("binary_matrix", "spiral_matrix", "n_queens", "string_insertion", "countdown", "puzzle24",
                 "polynomial_multiplication"):
        source = inspect.getsource(reasoning_gym.factory.DATASETS[task][0].score_answer)
        assert "eval(" in source or "parse_expr(" in source, task
        assert task in textwrap.dedent(pc.__doc__)


# -- the trainer's use of a curriculum ------------------------------------------------------------------


class RecordingCurriculum:
    """The Curriculum interface over the built-in task's problems: one level up per step; records calls."""

    def __init__(self, problems):
        self.pool, self.level, self.drawn, self.accuracies = problems, 0, [], []

    def problems(self, indices):
        self.drawn.append(list(indices))
        return [self.pool[(i + self.level) % len(self.pool)] for i in indices]

    def end_step(self, accuracy):
        self.accuracies.append(accuracy)
        self.level += 1
        return {"curriculum_level": self.level - 1}

    def state_dict(self):
        return {"level": self.level, "history": list(self.accuracies)}

    def load_state_dict(self, state):
        self.level, self.accuracies = state["level"], list(state["history"])


def test_the_trainer_draws_through_the_curriculum_logs_its_level_and_resumes_it(tmp_path):
    from fipo_bench.algorithms import get_algorithm
    from fipo_bench.backends.local.trainer import LocalTrainer
    from fipo_bench.tasks import TaskData, Verdict
    from fipo_bench.tiny import TinyRecipe, TinyTask
    from fipo_bench.tiny.warmup import build_base_model

    model, tokenizer = build_base_model(TinyRecipe(hidden_size=16, num_layers=1, num_heads=2, ffn_size=32,
                                                   max_length=64))
    base = tmp_path / "base"
    model.save_pretrained(str(base))
    tokenizer.save_pretrained(str(base))
    cfg = build_config("tiny", sets=["rollout_batch_size=2", "samples_per_prompt=2", "mini_batch_size=2",
                                     "max_response_length=4", "algos=grpo"])
    pool = TinyTask(test_size=4).train_problems(6)
    made = []

    def curriculum():
        made.append(RecordingCurriculum(pool))
        return made[-1]

    data = TaskData(train=pool, evals={}, prompt_text=lambda t: t, curriculum=curriculum,
                    check=lambda responses, golds: [Verdict("incorrect", None, False) for _ in responses])
    trainer = LocalTrainer(cfg, get_algorithm("grpo"), 0, base, data)
    metrics = [trainer.train_step(step) for step in (1, 2)]
    assert [m["curriculum_level"] for m in metrics] == [0, 1]
    assert made[0].drawn == [trainer.order.indices(1, 0), trainer.order.indices(2, 0)]
    assert made[0].accuracies == [m["accuracy"] for m in metrics]
    trainer.save_checkpoint(tmp_path / "step-2", 2)
    resumed = LocalTrainer(cfg, get_algorithm("grpo"), 0, base, data, resume_from=tmp_path / "step-2")
    assert resumed.curriculum is made[1] and made[1].state_dict() == made[0].state_dict()
    assert resumed.train_step(3)["curriculum_level"] == 2
