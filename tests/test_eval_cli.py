"""`fipo-bench eval` end to end on a tiny random Qwen2 model (transformers backend, CPU), and
`fipo-bench score` on handmade generations."""

import json

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


def run_eval(model, out, shared_data_dir, *extra):
    args = [
        "eval", str(model), "--dataset", "aime24", "--data-dir", str(shared_data_dir), "--limit", "3",
        "--k", "2", "--max-new-tokens", "12", "--backend", "transformers", "--out", str(out), *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_eval_end_to_end(tiny_model, shared_data_dir, tmp_path):
    result = run_eval(tiny_model, tmp_path / "a", shared_data_dir, "--batch-size", "4")
    assert "avg@2" in result.output
    rows, summary = read_eval_dir(tmp_path / "a")
    problems = load_dataset("aime24", shared_data_dir, limit=3)

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
    data = ["--dataset", "aime24", "--data-dir", str(shared_data_dir)]
    generations = str(tmp_path / "a" / "generations.jsonl")
    result = runner.invoke(app, ["score", generations, *data, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    rescored_rows, rescored = read_eval_dir(tmp_path / "r")
    assert rescored_rows == rows
    for key in ("avg_at_k", "pass_at_k", "cons_at_k", "response_length", "truncation_rate", "per_problem"):
        assert rescored[key] == summary[key]

    # Seeds are per (problem, sample): another batch size gives the same responses.
    run_eval(tiny_model, tmp_path / "b", shared_data_dir, "--batch-size", "1")
    rows_b, _ = read_eval_dir(tmp_path / "b")
    assert [r["response"] for r in rows_b] == [r["response"] for r in rows]
    # A different seed gives different ones.
    run_eval(tiny_model, tmp_path / "c", shared_data_dir, "--seed", "1")
    rows_c, _ = read_eval_dir(tmp_path / "c")
    assert [r["response"] for r in rows_c] != [r["response"] for r in rows]


def test_eval_greedy_preset_is_one_deterministic_sample(tiny_model, shared_data_dir, tmp_path):
    args = ["--preset", "greedy", "--k", "1", "--template", "raw"]
    run_eval(tiny_model, tmp_path / "g1", shared_data_dir, *args)
    run_eval(tiny_model, tmp_path / "g2", shared_data_dir, *args, "--seed", "5")
    rows_1, summary = read_eval_dir(tmp_path / "g1")
    rows_2, _ = read_eval_dir(tmp_path / "g2")
    assert summary["k"] == 1 and summary["sampling"]["temperature"] == 0.0
    assert [r["response"] for r in rows_1] == [r["response"] for r in rows_2]  # the seed does not matter


def test_eval_rejects_bad_inputs(tmp_path, shared_data_dir, tiny_model):
    result = runner.invoke(app, ["eval", str(tmp_path), "--dataset", "aime24"])
    assert result.exit_code == 1 and "config.json" in result.output
    data = ["--data-dir", str(shared_data_dir)]
    result = runner.invoke(app, ["eval", str(tiny_model), "--dataset", "nope", *data])
    assert result.exit_code == 1 and "neither a dataset name" in result.output
    result = runner.invoke(
        app, ["eval", str(tiny_model), "--top-p", "0", *data, "--out", str(tmp_path)]
    )
    assert result.exit_code == 1 and "top_p" in result.output


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


def test_score_with_problem_ids(tmp_path, shared_data_dir):
    # AIME24 problems 60 (gold 204) and 61 (gold 113), 2 samples each:
    # 60: "Answer: 204" correct, "\boxed{204}" correct; 61: "Answer: 0113" correct, "no idea" no answer.
    # avg@2 = (1 + 0.5) / 2 = 0.75; pass@2 = (1 + 1) / 2 = 1; cons@2 = 1 (61's only vote is 113).
    path = write_jsonl(tmp_path / "gens.jsonl", [
        {"problem_id": 60, "response": "Answer: 204", "num_tokens": 5, "truncated": False},
        {"problem_id": "60", "response": "so \\boxed{204}", "num_tokens": 7, "truncated": False},
        {"problem_id": "61", "response": "Answer: 0113", "num_tokens": 9, "truncated": True},
        {"problem_id": "61", "response": "no idea", "num_tokens": 11, "truncated": True},
    ])
    data = ["--dataset", "aime24", "--data-dir", str(shared_data_dir)]
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
    result = runner.invoke(app, ["score", str(bad)])
    assert result.exit_code == 1 and "bad.jsonl:2" in result.output
    bad = write_jsonl(tmp_path / "bad2.jsonl", [{"problem_id": "999", "response": "x"}])
    result = runner.invoke(app, ["score", str(bad), "--dataset", "aime24", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "aime24.jsonl" in result.output


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
        def __init__(self, model, seed, **options):
            self.model, self.seed = model, seed
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


def test_auto_backend_is_transformers_without_a_gpu():
    from fipo_bench.evals.generate import resolve_backend

    assert resolve_backend("auto") == "transformers"  # this machine has no GPU
    assert resolve_backend("vllm") == "vllm"
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend("tgi")
