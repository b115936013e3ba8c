"""`fipo-bench eval` end to end on a tiny random Qwen2 model (transformers backend, CPU), and
`fipo-bench score` on handmade generations."""

import json
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from fipo_bench.cli import app
from fipo_bench.evals import check_answer, load_dataset
from fipo_bench.evals.generate import SamplingConfig, sample_seed
from fipo_bench.evals.io import read_eval_dir
from fipo_bench.evals.metrics import summarize_generations

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A randomly initialised 2-layer Qwen2 with a byte-level BPE tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny-qwen2")
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<pad>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(["Solve the following math problem step by step. Answer: 42"], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>"
    )
    fast.save_pretrained(out)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(out)
    return out


def run_eval(model, out, fixture_data_dir, *extra):
    args = [
        "eval", str(model), "--dataset", "aime24", "--data-dir", str(fixture_data_dir), "--limit", "3",
        "--k", "2", "--max-new-tokens", "12", "--backend", "transformers", "--out", str(out), *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_eval_end_to_end(tiny_model, fixture_data_dir, tmp_path):
    result = run_eval(tiny_model, tmp_path / "a", fixture_data_dir, "--batch-size", "4")
    assert "avg@2" in result.output
    rows, summary = read_eval_dir(tmp_path / "a")
    problems = load_dataset("aime24", fixture_data_dir, limit=3)

    expected_keys = [(p.id, i) for p in problems for i in range(2)]
    assert [(r["problem_id"], r["sample_index"]) for r in rows] == expected_keys
    assert [r["gold"] for r in rows] == [p.answer for p in problems for _ in range(2)]
    for row in rows:
        assert 1 <= row["num_tokens"] <= 12
        if row["truncated"]:  # no end-of-sequence token within the budget
            assert row["num_tokens"] == 12
        regraded = check_answer(row["response"], row["gold"])
        assert (row["verdict"], row["extracted"], row["correct"]) == (
            regraded.verdict, regraded.extracted, regraded.correct
        )
    # The summary is exactly what the metrics make of the generations on disk.
    assert summary == summarize_generations(
        rows, dataset="aime24", checkpoint=str(tiny_model), k=2, sampling=summary["sampling"]
    )
    assert summary["num_problems"] == 3 and summary["num_samples"] == 6
    assert summary["sampling"] == {
        "k": 2, "temperature": 1.0, "top_p": 0.7, "max_new_tokens": 12, "seed": 0, "template": "dapo",
    }

    # `score` on the written generations reproduces the numbers.
    data = ["--dataset", "aime24", "--data-dir", str(fixture_data_dir)]
    generations = str(tmp_path / "a" / "generations.jsonl")
    result = runner.invoke(app, ["score", generations, *data, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    rescored_rows, rescored = read_eval_dir(tmp_path / "r")
    assert rescored_rows == rows
    for key in ("avg_at_k", "pass_at_k", "cons_at_k", "response_length", "truncation_rate", "per_problem"):
        assert rescored[key] == summary[key]

    # Seeds are per (problem, sample): another batch size gives the same responses.
    run_eval(tiny_model, tmp_path / "b", fixture_data_dir, "--batch-size", "1")
    rows_b, _ = read_eval_dir(tmp_path / "b")
    assert [r["response"] for r in rows_b] == [r["response"] for r in rows]
    # A different seed gives different ones.
    run_eval(tiny_model, tmp_path / "c", fixture_data_dir, "--seed", "1")
    rows_c, _ = read_eval_dir(tmp_path / "c")
    assert [r["response"] for r in rows_c] != [r["response"] for r in rows]


def test_eval_greedy_preset_is_one_deterministic_sample(tiny_model, fixture_data_dir, tmp_path):
    args = ["--preset", "greedy", "--k", "1", "--template", "raw"]
    run_eval(tiny_model, tmp_path / "g1", fixture_data_dir, *args)
    run_eval(tiny_model, tmp_path / "g2", fixture_data_dir, *args, "--seed", "5")
    rows_1, summary = read_eval_dir(tmp_path / "g1")
    rows_2, _ = read_eval_dir(tmp_path / "g2")
    assert summary["k"] == 1 and summary["sampling"]["temperature"] == 0.0
    assert [r["response"] for r in rows_1] == [r["response"] for r in rows_2]  # the seed does not matter


def one_error_line(result) -> str:
    """A user error: exit code 2 and exactly one line of output, `error: ...` (no traceback)."""
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_eval_rejects_bad_inputs(tmp_path, fixture_data_dir, tiny_model, monkeypatch):
    import sys

    assert "config.json" in one_error_line(runner.invoke(app, ["eval", str(tmp_path), "--dataset", "aime24"]))
    data = ["--data-dir", str(fixture_data_dir), "--out", str(tmp_path / "out")]
    for extra, message in [
        (["--dataset", "nope"], "neither a dataset name"),
        (["--top-p", "0"], "top_p"),
        (["--template", "nope"], "unknown prompt template 'nope'"),
        (["--backend", "tgi"], "unknown backend 'tgi'"),
        (["--limit", "0"], "limit must be a positive number"),
    ]:
        assert message in one_error_line(runner.invoke(app, ["eval", str(tiny_model), *data, *extra]))
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed, whatever this machine has
    line = one_error_line(runner.invoke(app, ["eval", str(tiny_model), *data, "--backend", "vllm"]))
    assert "pip install -e '.[vllm]'" in line
    assert not (tmp_path / "out").exists()


def test_hub_install_hint_keeps_its_brackets(tiny_model, monkeypatch):
    """Rich markup would read `[hub]` as a style tag and print `pip install -e '.'`."""
    import sys

    monkeypatch.setitem(sys.modules, "datasets", None)
    monkeypatch.delenv("FIPO_BENCH_DATA", raising=False)
    line = one_error_line(runner.invoke(app, ["eval", str(tiny_model), "--dataset", "math500"]))
    assert "pip install -e '.[hub]' in the fipo-bench checkout" in line


def fake_run_dir(root, tiny_model, steps=(2, 10)):
    """A results/<run>/<algo>-seed0 directory as fipo-bench writes it: its own config.json (no model
    config: "dtype": "auto" is what made transformers fail with `torch has no attribute auto`),
    status, metrics and Hugging Face checkpoints below."""
    import shutil

    run_dir = root / "grpo-seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"algo": "grpo", "seed": 0, "dtype": "auto"}))
    (run_dir / "status.json").write_text(json.dumps({"status": "completed", "step": steps[-1]}))
    (run_dir / "metrics.jsonl").write_text("")
    for step in steps:
        shutil.copytree(tiny_model, run_dir / "checkpoints" / f"step-{step}")
    return run_dir


def test_eval_of_a_run_directory_points_at_its_checkpoints(tiny_model, fixture_data_dir, tmp_path,
                                                           monkeypatch):
    run_dir = fake_run_dir(tmp_path / "results" / "run", tiny_model)
    data = ["--data-dir", str(fixture_data_dir)]
    line = one_error_line(runner.invoke(app, ["eval", str(run_dir), *data]))
    assert f"{run_dir} is a fipo-bench results directory, not a checkpoint" in line
    assert f"such as {run_dir / 'checkpoints' / 'step-10'} (2 checkpoints below it)" in line  # the latest
    line = one_error_line(runner.invoke(app, ["eval", str(run_dir.parent), *data]))  # the run's root
    assert "step-10" in line
    monkeypatch.chdir(run_dir.parent.parent)
    line = one_error_line(runner.invoke(app, ["eval", "run/step-10", *data]))  # run/ is here: a typo
    assert "checkpoint 'run/step-10': no such file or directory" in line
    (run_dir / "checkpoints" / "step-10" / "model.safetensors").unlink()
    line = one_error_line(runner.invoke(app, ["eval", str(run_dir / "checkpoints" / "step-10"), *data]))
    assert "config.json but no weights" in line


def test_eval_of_a_hub_id_says_at_once_that_the_hub_is_out_of_reach(
    fixture_data_dir, tmp_path, monkeypatch, unreachable_hub
):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.chdir(tmp_path)
    args = ["eval", "nobody/no-such-model", "--data-dir", str(fixture_data_dir)]
    line = one_error_line(runner.invoke(app, args))
    assert f"model 'nobody/no-such-model' comes from the Hugging Face Hub, which does not answer at " \
           f"{unreachable_hub}" in line and "pass a local model directory" in line
    # In its cache, the way out is offline mode.
    snapshot = tmp_path / "hf-cache" / "models--nobody--no-such-model" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    assert "set HF_HUB_OFFLINE=1 to use that copy" in one_error_line(runner.invoke(app, args))
    # HF_HUB_OFFLINE: the cache only, and nothing asked of the network.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    line = one_error_line(runner.invoke(app, ["eval", "other/model", "--data-dir", str(fixture_data_dir)]))
    assert "not in the Hugging Face cache" in line and "HF_HUB_OFFLINE is set" in line
    assert list(tmp_path.iterdir()) == [tmp_path / "hf-cache"]  # nothing written


def quick_eval(checkpoint, fixture_data_dir, *extra):
    args = ["eval", str(checkpoint), "--data-dir", str(fixture_data_dir), "--limit", "1", "--k", "1",
            "--max-new-tokens", "4", "--backend", "transformers", *extra]
    return runner.invoke(app, args)


def test_default_output_keeps_runs_apart_and_is_never_overwritten(tiny_model, fixture_data_dir, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    step_a = fake_run_dir(tmp_path / "results" / "run-a", tiny_model, (60,)) / "checkpoints" / "step-60"
    step_b = fake_run_dir(tmp_path / "results" / "run-b", tiny_model, (60,)) / "checkpoints" / "step-60"
    for step in (step_a, step_b):
        result = quick_eval(step, fixture_data_dir)
        assert result.exit_code == 0, result.output
    out_a = tmp_path / "results" / "eval" / "run-a" / "grpo-seed0" / "checkpoints" / "step-60" / "aime24"
    out_b = tmp_path / "results" / "eval" / "run-b" / "grpo-seed0" / "checkpoints" / "step-60" / "aime24"
    assert read_eval_dir(out_a)[1]["checkpoint"] == str(step_a)
    assert read_eval_dir(out_b)[1]["checkpoint"] == str(step_b)

    before = (out_a / "summary.json").read_text()
    line = one_error_line(quick_eval(step_a, fixture_data_dir, "--seed", "3"))
    assert f"{Path('results/eval/run-a/grpo-seed0/checkpoints/step-60/aime24')} already holds an " \
           "evaluation (generations.jsonl, summary.json): pass --force" in line
    assert (out_a / "summary.json").read_text() == before
    result = quick_eval(step_a, fixture_data_dir, "--seed", "3", "--force")
    assert result.exit_code == 0, result.output
    assert read_eval_dir(out_a)[1]["sampling"]["seed"] == 3


def test_default_output_directory_of_other_checkpoints(tmp_path, monkeypatch):
    from fipo_bench.commands.evaluate import default_out_dir

    monkeypatch.chdir(tmp_path)
    hub_id = "Qwen/Qwen2.5-Math-7B"
    assert default_out_dir(hub_id, "aime24") == Path("results/eval/Qwen/Qwen2.5-Math-7B/aime24")
    (tmp_path / "work" / "models" / "m").mkdir(parents=True)
    assert default_out_dir("work/models/m/", "gsm8k") == Path("results/eval/work/models/m/gsm8k")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # outside the working directory: the whole path
    expected = Path("results", "eval", *tmp_path.resolve().parts[1:], "work", "models", "m", "x")
    assert default_out_dir("../work/models/m", "x") == expected


def test_top_p_keeps_the_smallest_prefix_reaching_the_mass():
    import torch

    from fipo_bench.sampling import nucleus_filter

    # probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.7 keeps {0.5, 0.3}; 0.5 keeps {0.5}; 1.0 keeps all
    logits = torch.log(torch.tensor([[0.15, 0.5, 0.05, 0.3]]))
    for top_p, allowed in [(0.7, {1, 3}), (0.5, {1}), (0.81, {0, 1, 3}), (1.0, {0, 1, 2, 3})]:
        kept = set(torch.isfinite(nucleus_filter(logits, top_p))[0].nonzero().flatten().tolist())
        assert kept == allowed, top_p


def test_sampling_config_and_seeds():
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2)
    assert len({sample_seed(0, i, j) for i in range(50) for j in range(50)}) == 2500
    with pytest.raises(ValueError, match="k must be"):
        SamplingConfig(k=0)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_with_problem_ids(tmp_path, fixture_data_dir):
    # Fixture AIME24 problems 60 (gold 401) and 61 (gold 15, stored "015"), 2 samples each:
    # 60: "Answer: 401" correct, "\boxed{401}" correct; 61: "Answer: 015" correct, "no idea" no answer.
    # avg@2 = (1 + 0.5) / 2 = 0.75; pass@2 = (1 + 1) / 2 = 1; cons@2 = 1 (61's only vote is 15).
    path = write_jsonl(tmp_path / "gens.jsonl", [
        {"problem_id": 60, "response": "Answer: 401", "num_tokens": 5, "truncated": False},
        {"problem_id": "60", "response": "so \\boxed{401}", "num_tokens": 7, "truncated": False},
        {"problem_id": "61", "response": "Answer: 015", "num_tokens": 9, "truncated": True},
        {"problem_id": "61", "response": "no idea", "num_tokens": 11, "truncated": True},
    ])
    data = ["--dataset", "aime24", "--data-dir", str(fixture_data_dir)]
    result = runner.invoke(app, ["score", str(path), *data, "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    rows, summary = read_eval_dir(tmp_path / "s")
    assert [r["verdict"] for r in rows] == ["correct", "correct", "correct", "no_answer"]
    assert [r["sample_index"] for r in rows] == [0, 1, 0, 1]
    assert summary["avg_at_k"] == pytest.approx(0.75)
    assert summary["pass_at_k"] == pytest.approx({"1": 0.75, "2": 1.0})
    assert summary["cons_at_k"] == pytest.approx(1.0)
    assert summary["response_length"]["mean"] == pytest.approx(8.0)
    assert summary["truncation_rate"] == pytest.approx(0.5)
    # maj@1: 60 votes 401 twice (1), 61 has one vote of 2 samples (1/2) -> .75; maj@2: both right -> 1.
    # G-Pass@2 at tau = 1 and mG-Pass@2 (i from 2 to 2): both of 2 correct: 60 yes, 61 no -> .5.
    assert summary["maj_at_k"] == pytest.approx({"1": 0.75, "2": 1.0})
    assert summary["g_pass_at_k"]["2"] == pytest.approx({"0.0": 1.0, "0.25": 1.0, "0.5": 1.0, "0.75": 0.5,
                                                         "1.0": 0.5})
    assert summary["mg_pass_at_k"] == pytest.approx({"1": 0.0, "2": 0.5})
    assert "maj@2" in result.output and "mG-Pass@k" in result.output and "0.5000" in result.output


def test_score_with_inline_answers_and_errors(tmp_path):
    # Each line its own problem: 1 correct of 3 -> avg@1 = 1/3.
    path = write_jsonl(tmp_path / "g.jsonl", [
        {"response": "Answer: 1/2", "answer": "\\frac{1}{2}"},
        {"response": "Answer: 3", "answer": 4},
        {"response": "nothing", "gold": "5"},
    ])
    result = runner.invoke(app, ["score", str(path)])
    assert result.exit_code == 0, result.output
    assert "0.3333" in result.output
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"response": "Answer: 1", "answer": "1"}, {"response": "x"}])
    assert "bad.jsonl:2" in one_error_line(runner.invoke(app, ["score", str(bad)]))
    bad = write_jsonl(tmp_path / "bad2.jsonl", [{"problem_id": "999", "response": "x"}])
    args = ["score", str(bad), "--dataset", "aime24", "--data-dir", str(tmp_path)]
    assert "aime24.jsonl" in one_error_line(runner.invoke(app, args))
    # --out never writes over an earlier evaluation without --force.
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "summary.json").write_text("{}")
    line = one_error_line(runner.invoke(app, ["score", str(path), "--out", str(tmp_path / "s")]))
    assert "already holds an evaluation (summary.json)" in line
    assert (tmp_path / "s" / "summary.json").read_text() == "{}"
    assert runner.invoke(app, ["score", str(path), "--out", str(tmp_path / "s"), "--force"]).exit_code == 0


def test_vllm_path_with_a_fake_vllm(monkeypatch):
    """The vLLM code path (no GPU here): one request per (problem, sample) with its own seed and the
    transformers backend's prompt tokens, results put back in order, finish_reason "length" = truncated;
    on a CPU, eager mode and a bounded KV cache."""
    import sys
    import types

    from fipo_bench import models
    from fipo_bench.evals import generate as generate_module

    class FakeParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class FakeLLM:
        started: ClassVar[list] = []

        def __init__(self, model, seed, **options):
            self.model, self.seed = model, seed
            self.started.append((model, seed))
            assert options == {"enforce_eager": True, "kv_cache_memory_bytes": 1 << 30}

        def generate(self, prompts, params, use_tqdm):
            assert len(prompts) == len(params) and use_tqdm is False
            outputs = []
            for prompt, p in zip(prompts, params, strict=True):
                assert (p.n, p.temperature, p.top_p, p.max_tokens) == (1, 0.5, 0.9, 7)
                assert p.stop_token_ids == [2]  # the tokenizer's EOS (no generation config in "ckpt")
                text = f"p{prompt['prompt_token_ids'][0] - 100}|{p.seed}"
                finish = "length" if p.seed % 2 else "stop"
                tokens = [0] * (p.seed % 7 + 1)
                completion = types.SimpleNamespace(text=text, token_ids=tokens, finish_reason=finish)
                outputs.append(types.SimpleNamespace(outputs=[completion]))
            return outputs

    class FakeTokenizer:
        chat_template = None
        eos_token_id = 2

        def __call__(self, text, add_special_tokens):
            return {"input_ids": [100 + int(text[1:])]}

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM, SamplingParams=FakeParams))
    cpu = types.SimpleNamespace(current_platform=types.SimpleNamespace(is_cpu=lambda: True))
    monkeypatch.setitem(sys.modules, "vllm.platforms", cpu)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setattr(models, "load_tokenizer", lambda checkpoint: FakeTokenizer())
    monkeypatch.setattr(generate_module, "_ENGINE", None)
    config = SamplingConfig(k=3, temperature=0.5, top_p=0.9, max_new_tokens=7, seed=11)
    progress = []
    result = generate_module.generate(
        "ckpt", ["p0", "p1"], config, backend="vllm", on_progress=progress.append
    )
    assert sum(progress) == 6
    for i in range(2):
        for j in range(3):
            seed = sample_seed(11, i, j)
            generation = result[i][j]
            assert generation.text == f"p{i}|{seed}"
            assert generation.num_tokens == seed % 7 + 1
            assert generation.truncated == bool(seed % 2)
    # The engine is kept for the next evaluation of the same checkpoint and seed; another starts anew.
    assert generate_module.generate("ckpt", ["p0", "p1"], config, backend="vllm") == result
    assert FakeLLM.started == [("ckpt", 11)]
    generate_module.generate("other", ["p0"], config, backend="vllm")
    generate_module.generate("other", ["p0"], replace(config, seed=12), backend="vllm")
    assert FakeLLM.started == [("ckpt", 11), ("other", 11), ("other", 12)]


def test_auto_backend_is_transformers_without_a_gpu():
    from fipo_bench.evals.generate import resolve_backend

    assert resolve_backend("auto") == "transformers"  # this machine has no GPU
    assert resolve_backend("vllm") == "vllm"
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend("tgi")
