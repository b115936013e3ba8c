"""The built-in task: deterministic disjoint splits, reference responses, and the exact checker."""

import dataclasses
import re

import pytest

from fipo_bench.tiny import ChainTask, SumsTask, TinyTask, task_from_config


def _terms(prompt: str) -> list[int]:
    # Independent parse of the prompt text ("12+7+30?"), not through TinyTask.parse_prompt.
    assert prompt.endswith("?")
    return [int(t) for t in prompt[:-1].split("+")]


def test_splits_are_deterministic_for_a_seed_and_change_with_it():
    a, b = TinyTask(seed=3, test_size=50), TinyTask(seed=3, test_size=50)
    assert a.test_problems == b.test_problems
    assert a.train_problems(40) == b.train_problems(40)
    # A longer draw extends a shorter one: asking for more never reshuffles.
    assert a.train_problems(80)[:40] == a.train_problems(40)
    other = TinyTask(seed=4, test_size=50)
    assert [p.problem for p in other.test_problems] != [p.problem for p in a.test_problems]
    assert [p.problem for p in other.train_problems(40)] != [p.problem for p in a.train_problems(40)]


def test_train_and_test_are_disjoint_and_test_is_distinct():
    # A small space (2-3 terms in 1..9: 81 + 729 problems) makes collisions frequent, so disjointness
    # is really exercised.
    task = TinyTask(seed=0, max_terms=3, max_value=9, test_size=200)
    test = [p.problem for p in task.test_problems]
    assert len(set(test)) == 200
    train = [p.problem for p in task.train_problems(3000)]
    assert not set(train) & set(test)
    assert len({p.id for p in task.test_problems}) == 200


def test_problems_respect_the_fields_and_answers_are_the_sums():
    task = TinyTask(seed=1, min_terms=3, max_terms=5, min_value=10, max_value=20, test_size=100)
    for p in task.test_problems + task.train_problems(100):
        terms = _terms(p.problem)
        assert 3 <= len(terms) <= 5
        assert all(10 <= t <= 20 for t in terms)
        assert p.answer == str(sum(terms))
    # All term counts occur (a spread of difficulty).
    assert {len(_terms(p.problem)) for p in task.test_problems} == {3, 4, 5}


def test_reference_responses():
    # Hand-written: 47+8 = 55, 55+85 = 140.
    assert TinyTask.response((47, 8, 85), "direct") == "Answer:140"
    assert TinyTask.response((47, 8, 85), "steps") == "47+8=55;55+85=140;Answer:140"
    assert TinyTask.style_prefix("47+8+85?", "steps") == "4"
    assert TinyTask.style_prefix("47+8+85?", "direct") == "Answer:"
    assert TinyTask.response_style("47+8=55;55+85=140;Answer:140") == "steps"
    assert TinyTask.response_style("Answer:140") == "direct"
    with pytest.raises(ValueError, match="style"):
        TinyTask.response((1, 2), "verbose")


def test_every_reference_response_checks_correct_and_every_step_is_right():
    task = TinyTask(seed=2, test_size=100)
    for p in task.test_problems:
        terms = tuple(_terms(p.problem))
        for style in ("direct", "steps"):
            result = task.check(task.response(terms, style), p.answer)
            assert result.verdict == "correct" and result.correct and result.extracted == p.answer
        steps = task.response(terms, "steps").split(";")[:-1]
        assert len(steps) == len(terms) - 1
        for step in steps:
            left, right, total = map(int, re.fullmatch(r"(\d+)\+(\d+)=(\d+)", step).groups())
            assert left + right == total


@pytest.mark.parametrize(
    ("response", "verdict", "extracted"),
    [
        ("Answer:49", "correct", "49"),
        ("12+7=19;19+30=49;Answer:49", "correct", "49"),
        ("Answer:48", "incorrect", "48"),
        ("12+7=19;19+30=48;Answer:48", "incorrect", "48"),
        ("Answer:-49", "incorrect", "-49"),
        # Leading zeros compare as numbers (as AIME's "025" == "25").
        ("Answer:049", "correct", "049"),
        # Only the final line is graded (outcome reward): a wrong intermediate with the right final
        # number is correct, a right chain with a wrong final line is not.
        ("12+7=20;20+30=49;Answer:49", "correct", "49"),
        ("12+7=19;19+30=49;Answer:50", "incorrect", "50"),
        # The last final-answer line counts.
        ("Answer:12;Answer:49", "correct", "49"),
        ("Answer:49;Answer:12", "incorrect", "12"),
        # Text after the answer's ";" is not part of it.
        ("Answer:49;12+7", "correct", "49"),
        # Truncated responses: no final line, or nothing after it.
        ("12+7=19;19+3", "no_answer", None),
        ("12+7=19;19+30=49;Answer:", "no_answer", None),
        ("", "no_answer", None),
        # Malformed: an answer that is not an integer is graded, and wrong.
        ("Answer:4+9", "incorrect", "4+9"),
        ("Answer:49?", "incorrect", "49?"),
        ("Answer: 49", "correct", "49"),
    ],
)
def test_checker_on_hand_written_responses(response, verdict, extracted):
    result = TinyTask.check(response, "49")
    assert (result.verdict, result.extracted, result.correct) == (verdict, extracted, verdict == "correct")


def test_prompt_parse_round_trip_and_bad_input():
    assert TinyTask.parse_prompt(TinyTask.prompt((5, 17, 3))) == (5, 17, 3)
    for bad in ("5+17", "5+?", "5?", "a+b?"):
        with pytest.raises(ValueError, match="not a tiny-task prompt"):
            TinyTask.parse_prompt(bad)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("min_terms", 1, "min_terms"), ("max_terms", 1, "max_terms"), ("min_value", 5, "min_value"),
     ("test_size", 0, "test_size")],
)
def test_invalid_fields_name_the_field(field, value, message):
    base = {"max_value": 4} if field == "min_value" else {}
    with pytest.raises(ValueError, match=message):
        TinyTask(**base, **{field: value})


def test_too_small_a_space_for_the_test_split_is_an_error():
    # 2 terms in 0..1: only 4 distinct problems exist.
    task = dataclasses.replace(TinyTask(), max_terms=2, min_value=0, max_value=1, test_size=5)
    with pytest.raises(ValueError, match="test_size"):
        task.test_problems  # noqa: B018


# -- the chain task ---------------------------------------------------------------------------------------


def test_chain_problems_respect_the_fields_and_splits_are_deterministic_and_disjoint():
    task = ChainTask(seed=1, min_terms=4, max_terms=6, max_digit=5, test_size=100)
    assert task.test_problems == ChainTask(seed=1, min_terms=4, max_terms=6, max_digit=5,
                                           test_size=100).test_problems
    assert task.train_problems(80)[:40] == task.train_problems(40)
    train = task.train_problems(500)
    for p in task.test_problems + train:
        terms = _terms(p.problem)
        assert 4 <= len(terms) <= 6 and all(1 <= t <= 5 for t in terms)
        assert p.answer == str(sum(terms))
    assert {len(_terms(p.problem)) for p in task.test_problems} == {4, 5, 6}
    assert not {p.problem for p in train} & {p.problem for p in task.test_problems}
    # Its own random streams: not the sums task's problems for the same seed.
    sums = SumsTask(seed=1, min_value=1, max_value=9, min_terms=4, max_terms=10)
    chain = ChainTask(seed=1)
    assert [p.problem for p in chain.test_problems[:20]] != [p.problem for p in sums.test_problems[:20]]


def test_chain_reference_responses_of_every_length():
    # Hand-written: 7+3 = 10, 10+5 = 15, 15+9 = 24.
    terms = (7, 3, 5, 9)
    assert [ChainTask.response(terms, k) for k in range(4)] == [
        "Answer:24", "7+3=10;Answer:24", "7+3=10;10+5=15;Answer:24", "7+3=10;10+5=15;15+9=24;Answer:24"]
    assert [ChainTask.steps_written(ChainTask.response(terms, k)) for k in range(4)] == [0, 1, 2, 3]
    for bad in (-1, 4):
        with pytest.raises(ValueError, match="steps"):
            ChainTask.response(terms, bad)
    # The sums task's two styles are the chain's two ends.
    assert SumsTask.response(terms, "direct") == ChainTask.response(terms, 0)
    assert SumsTask.response(terms, "steps") == ChainTask.response(terms, 3)


def test_every_chain_granularity_grades_correct_and_every_step_is_right():
    task = ChainTask(seed=2, test_size=60)
    for p in task.test_problems:
        terms = tuple(_terms(p.problem))
        for k in range(len(terms)):
            response = task.response(terms, k)
            result = task.check(response, p.answer)
            assert result.verdict == "correct" and result.extracted == p.answer
            steps = response.split(";")[:-1]
            assert len(steps) == k
            partial = terms[0]
            for step, term in zip(steps, terms[1:], strict=False):
                left, right, total = map(int, re.fullmatch(r"(\d+)\+(\d+)=(\d+)", step).groups())
                assert (left, right, total) == (partial, term, partial + term)
                partial = total
            # A wrong final number is wrong at every granularity.
            wrong = response.rpartition("Answer:")[0] + f"Answer:{sum(terms) + 1}"
            assert task.check(wrong, p.answer).verdict == "incorrect"


def test_chain_warm_up_lengths_are_geometric_and_truncated_at_the_full_chain():
    import random

    task = ChainTask()
    rng = random.Random(0)
    terms = (1, 2, 3, 4, 5, 6)  # at most 5 steps
    counts = [0] * 6
    n = 20000
    for _ in range(n):
        counts[task.steps_written(task.warmup_response(terms, rng, 0.5))] += 1
    # P(k) = 0.5^(k+1) for k < 5, and the rest, 0.5^5, at the full chain.
    expected = [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.03125]
    for got, p in zip(counts, expected, strict=True):
        assert abs(got / n - p) < 4 * (p * (1 - p) / n) ** 0.5 + 1e-3
    assert {task.warmup_response(terms, rng, 0.0) for _ in range(20)} == {"Answer:21"}
    assert {task.warmup_response(terms, rng, 1.0) for _ in range(20)} == {task.response(terms, 5)}


def test_task_from_config_picks_the_task_by_name():
    assert task_from_config({}) == ChainTask()
    assert task_from_config({"name": "chain", "max_terms": 6}) == ChainTask(max_terms=6)
    assert task_from_config({"name": "sums", "max_value": 9}) == SumsTask(max_value=9)
    with pytest.raises(ValueError, match="unknown tiny task 'prod'"):
        task_from_config({"name": "prod"})
    with pytest.raises(TypeError):
        task_from_config({"name": "chain", "max_value": 9})  # a sums field


@pytest.mark.parametrize(("fields", "message"), [
    ({"min_terms": 1}, "min_terms"), ({"min_terms": 5, "max_terms": 4}, "max_terms"),
    ({"max_digit": 0}, "max_digit"), ({"max_digit": 10}, "max_digit"), ({"test_size": 0}, "test_size")])
def test_invalid_chain_fields_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        ChainTask(**fields)
