"""RunConfig -> OpenRLHF command line, checked by OpenRLHF 0.11.2's own parser (openrlhf.cli.train_ppo_ray,
run as __main__ up to train(), so its post-parse checks run too), and the launcher's dry run."""

import json
import math
import subprocess
import sys

import pytest

pytest.importorskip("openrlhf", reason="OpenRLHF backend tests need openrlhf (installed by .ci/run)")

from openrlhf_stubs import stubbed_gpu_modules  # noqa: E402

from fipo_bench import registry  # noqa: E402
from fipo_bench.algorithms import get_algorithm, list_algorithms  # noqa: E402
from fipo_bench.backends.openrlhf import translate  # noqa: E402
from fipo_bench.config import RunConfig  # noqa: E402

CONFIG = RunConfig(
    run_name="t",
    algos=("grpo", "dapo", "fipo"),
    seeds=(3,),
    model="/models/base",
    dataset="data.jsonl",
    eval_datasets=("aime24",),
    num_steps=20,
    rollout_batch_size=32,
    samples_per_prompt=8,
    mini_batch_size=8,
    max_prompt_length=256,
    max_response_length=1024,
    lr=2e-6,
    warmup_steps=3,
    weight_decay=0.1,
    grad_clip=0.5,
    temperature=0.9,
    top_p=0.95,
    device="auto",
    recompute_old_logp=True,
    max_gen_batches=4,
    eval_every=5,
    checkpoint_every=10,
    algo_overrides={"dapo": {"overlong_buffer": 256}, "fipo": {"overlong_buffer": 256, "half_life": 16.0}},
)
NUM_PROMPTS = 100
LAYOUT = translate.Layout(num_nodes=1, gpus_per_node=4, vllm_engines=4, vllm_tensor_parallel=1)


def argv_for(name, tmp_path, config=CONFIG, layout=LAYOUT, num_prompts=NUM_PROMPTS):
    alg = get_algorithm(name, **config.algo_overrides.get(name, {}))
    paths = translate.RunPaths(tmp_path / f"{name}-seed3", tmp_path / "reward.py", tmp_path / "prompts.jsonl")
    return alg, translate.openrlhf_args(
        config, alg, 3, paths, layout, model="/models/base", num_prompts=num_prompts
    )


@pytest.fixture(scope="module")
def parse():
    with stubbed_gpu_modules():
        from fipo_bench.backends.openrlhf.driver import parse_openrlhf_args

        yield parse_openrlhf_args


@pytest.mark.parametrize("name", ["grpo", "dapo", "fipo"])
def test_every_flag_is_accepted_and_means_what_we_intend(name, tmp_path, parse):
    alg, argv = argv_for(name, tmp_path)
    args = parse(argv)  # argparse exits on an unknown flag; OpenRLHF's asserts run after parsing
    hp = alg.hyperparameters()
    n = CONFIG.samples_per_prompt
    # shapes: 32 prompts x 8 samples per step, 8 prompts per optimizer step -> 4 updates per step
    assert (args.rollout.batch_size, args.rollout.n_samples_per_prompt) == (32, 8)
    assert args.train.batch_size == 8 * n and args.train.max_epochs == 1
    assert args.train.micro_batch_size == 8 * n // 4  # micro_batch_size 0 = a whole mini-batch per GPU
    assert args.rollout.max_new_tokens == 1024 and args.data.max_len == 256 + 1024
    assert (args.rollout.temperature, args.rollout.top_p, args.train.seed) == (0.9, 0.95, 3)
    assert (args.actor.adam.lr, args.actor.adam.weight_decay, args.actor.max_norm) == (2e-6, 0.1, 0.5)
    assert list(args.actor.adam.betas) == [0.9, 0.999] and args.actor.lr_scheduler == "constant_with_warmup"
    # OpenRLHF's schedule: max_steps = rows * n // train_batch * episodes (ppo_trainer.prepare_datasets);
    # warm-up = ceil(max_steps * ratio) optimizer steps (deepspeed.py) = 3 rollout steps x 4 updates.
    factor = CONFIG.max_gen_batches if alg.dynamic_sampling else 1
    episodes = math.ceil(20 * 32 * factor / NUM_PROMPTS)
    assert (args.train.num_episodes, args.data.max_samples) == (episodes, NUM_PROMPTS)
    max_steps = NUM_PROMPTS * n // args.train.batch_size * episodes
    assert math.ceil(max_steps * args.actor.lr_warmup_ratio) == 3 * 4
    # algorithm
    assert args.algo.advantage.estimator == "group_norm" and args.critic.model_name_or_path is None
    assert list(args.actor.eps_clip_low_high) == [hp["clip_low"], hp["clip_high"]]
    assert args.actor.dual_clip == hp["dual_clip"]
    assert args.actor.loss_agg_mode == hp["loss_agg"]
    assert args.algo.kl.use_loss == (hp["kl_coef"] > 0) and args.algo.kl.init_coef == hp["kl_coef"]
    if hp["kl_coef"] > 0:
        assert args.algo.kl.estimator == "k3"
    assert args.algo.dynamic_filtering_enable == hp["dynamic_sampling"]
    if hp["dynamic_sampling"]:
        assert list(args.algo.dynamic_filtering_range) == [0.0, 1.0]
    assert args.reward.overlong_buffer_len == hp.get("overlong_buffer")
    assert args.reward.remote_url == [str(tmp_path / "reward.py")]
    # outputs
    assert args.ckpt.save_hf and args.ckpt.save_steps == 5  # gcd(eval_every 5, checkpoint_every 10)
    assert args.logger.tensorboard_dir == str(tmp_path / f"{name}-seed3" / "openrlhf" / "tensorboard")
    assert args.train.colocate_all and args.vllm.num_engines == 4


def test_published_algorithms_translate_as_the_issue_specifies(tmp_path, parse):
    grpo, dapo, fipo = (parse(argv_for(name, tmp_path)[1]) for name in ("grpo", "dapo", "fipo"))
    assert (list(grpo.actor.eps_clip_low_high), grpo.actor.dual_clip) == ([0.2, 0.2], None)
    assert (grpo.algo.kl.use_loss, grpo.algo.kl.estimator, grpo.algo.kl.init_coef) == (True, "k3", 0.04)
    assert grpo.actor.loss_agg_mode == "seq-mean-token-mean" and not grpo.algo.dynamic_filtering_enable
    for args in (dapo, fipo):  # FIPO = DAPO's flags; its loss comes from the plugin
        assert (list(args.actor.eps_clip_low_high), args.actor.dual_clip) == ([0.2, 0.28], 10.0)
        assert (args.algo.kl.use_loss, args.algo.kl.init_coef) == (False, 0.0)  # no reference model
        assert args.actor.loss_agg_mode == "token-mean" and args.algo.dynamic_filtering_enable
        assert (args.reward.overlong_buffer_len, args.reward.overlong_penalty_factor) == (256.0, 1.0)


def test_plugin_environment_rebuilds_the_same_algorithm():
    alg = get_algorithm("fipo", half_life=16.0, overlong_buffer=256)
    env = translate.plugin_env(CONFIG, alg)
    rebuilt = get_algorithm(env[translate.ENV_ALGO], **json.loads(env[translate.ENV_HPARAMS]))
    assert rebuilt == alg
    assert env[translate.ENV_MAX_STEPS] == "20" and env[translate.ENV_MAX_GEN_BATCHES] == "4"


ZOO = [  # the built-in algorithms beyond the first three (other test modules register their own)
    name
    for name in list_algorithms()
    if registry.algorithm_class(name).__module__.startswith("fipo_bench.")
    and name not in ("grpo", "dapo", "fipo", "fipo-7b")
    and not registry.algorithm_class(name).needs_critic  # the value-model algorithms: tests of their own
]


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_algorithm_translates(name, tmp_path, parse):
    """Every flag parses; the loss flags mirror the algorithm where it has them (the plugin replaces the
    loss and checks they arrive unchanged), the token-sum modes run as seq-mean-token-mean (the plugin
    rescales them), and no reference model is built (none of their recipes has a KL loss)."""
    config = CONFIG.replace(algos=(name,), algo_overrides={})
    alg, argv = argv_for(name, tmp_path, config)
    args = parse(argv)
    hp = alg.hyperparameters()
    assert args.algo.advantage.estimator == "group_norm" and args.actor.policy_loss_type == "ppo"
    expected_agg = "token-mean" if hp["loss_agg"] == "token-mean" else "seq-mean-token-mean"
    assert args.actor.loss_agg_mode == expected_agg
    if "clip_low" in hp:
        assert list(args.actor.eps_clip_low_high) == [hp["clip_low"], hp["clip_high"]]
    else:
        assert "--actor.eps_clip_low_high" not in argv
    assert args.actor.dual_clip == hp.get("dual_clip")
    assert (args.algo.kl.use_loss, args.algo.kl.init_coef) == (False, 0.0)
    assert args.algo.dynamic_filtering_enable == hp["dynamic_sampling"]


def test_what_openrlhf_cannot_express_is_an_error_naming_it(tmp_path):
    with pytest.raises(translate.UnsupportedOption, match="dtype"):
        argv_for("dapo", tmp_path, CONFIG.replace(dtype="float32"))
    with pytest.raises(translate.UnsupportedOption, match="recompute_old_logp"):
        argv_for("dapo", tmp_path, CONFIG.replace(recompute_old_logp=False))
    with pytest.raises(translate.UnsupportedOption, match="device"):
        argv_for("dapo", tmp_path, CONFIG.replace(device="cpu"))
    with pytest.raises(translate.UnsupportedOption, match="mini_batch_size"):
        argv_for("dapo", tmp_path, layout=translate.Layout(gpus_per_node=3, vllm_engines=3))
    with pytest.raises(translate.UnsupportedOption, match="rollout_batch_size"):
        argv_for("dapo", tmp_path, num_prompts=31)

    class KeepsAll:  # a dynamic-sampling filter other than "not all right, not all wrong"
        name, dynamic_sampling = "custom", True

        def keep_group(self, scores):
            return True

    with pytest.raises(translate.UnsupportedOption, match="custom.keep_group"):
        translate.check_keep_group_is_range(KeepsAll(), 8)


def test_extra_flags_pass_through_but_cannot_redefine_ours():
    ours = ["--actor.dual_clip", "10.0", "--train.seed", "0"]
    extra = {translate.ENV_EXTRA_ARGS: "--ds.zero_stage 3 --actor.gradient_checkpointing_enable"}
    assert translate.extra_args(ours, extra) == [
        "--ds.zero_stage",
        "3",
        "--actor.gradient_checkpointing_enable",
    ]
    with pytest.raises(translate.UnsupportedOption, match="--actor.dual_clip"):
        translate.extra_args(ours, {translate.ENV_EXTRA_ARGS: "--actor.dual_clip 3"})


def test_layout_from_environment_is_validated():
    layout = translate.Layout.from_env({"FIPO_BENCH_OPENRLHF_NODES": "2", "FIPO_BENCH_OPENRLHF_VLLM_TP": "2"})
    assert (layout.actor_gpus, layout.vllm_engines * layout.vllm_tensor_parallel, layout.colocated) == (
        16,
        16,
        True,
    )
    with pytest.raises(translate.UnsupportedOption, match="FIPO_BENCH_OPENRLHF_NODES"):
        translate.Layout.from_env({"FIPO_BENCH_OPENRLHF_NODES": "two"})


def test_dry_run_prints_every_job_without_ray_or_openrlhf(tmp_path):
    """The built-in task's dry run in a fresh interpreter: commands, environment and plugin settings,
    and neither ray, openrlhf, deepspeed nor vllm imported."""
    code = f"""
import sys
from fipo_bench.backends import Execution, get_backend
from fipo_bench.config import RunConfig
cfg = RunConfig(run_name="dry", output_dir={str(tmp_path)!r}, algos=("grpo", "fipo"), seeds=(0, 1),
                num_steps=4,
                device="cuda", recompute_old_logp=True, rollout_batch_size=8, mini_batch_size=4, eval_every=2,
                algo_overrides={{"fipo": {{"overlong_buffer": 12}}}})
print(get_backend("openrlhf").plan(cfg, Execution()).describe())
print("HEAVY", sorted(m for m in ("ray", "openrlhf", "deepspeed", "vllm") if m in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "HEAVY []" in out
    commands = [line for line in out.splitlines() if "fipo_bench.backends.openrlhf.driver" in line]
    assert len(commands) == 4  # 2 algorithms x 2 seeds
    assert sum("--actor.dual_clip 10.0" in c for c in commands) == 2  # fipo only
    assert sum("--algo.kl.use_loss" in c for c in commands) == 2  # grpo only
    assert "export FIPO_BENCH_ALGO=fipo" in out and "worker_process_setup_hook" in out
    assert "--train.seed 1" in commands[-1] and not (tmp_path / "dry").exists()  # a dry run writes nothing


@pytest.mark.parametrize(
    ("name", "layout", "gpus"),
    [
        ("grpo", LAYOUT, 4),  # colocated: every model and engine on the actor's 4 GPUs
        ("grpo", translate.Layout(gpus_per_node=2, vllm_engines=2, colocate=False), 6),  # actor, ref, vLLM
        ("dapo", translate.Layout(gpus_per_node=2, vllm_engines=3, vllm_tensor_parallel=2), 8),  # no ref
    ],
)
def test_gpus_needed_follows_openrlhfs_placement(name, layout, gpus, tmp_path, parse):
    from fipo_bench.backends.openrlhf.driver import check_cluster, gpus_needed

    args = parse(argv_for(name, tmp_path, layout=layout)[1])
    assert gpus_needed(args) == gpus
    check_cluster(args, {"GPU": gpus, "CPU": gpus + 1})  # enough: no error
    with pytest.raises(SystemExit, match=rf"^error: this job needs {gpus} GPUs .* the cluster has 1 GPUs"):
        check_cluster(args, {"GPU": 1, "CPU": 64})


def test_colocating_needs_matching_gpu_counts():
    assert not translate.Layout(gpus_per_node=2, vllm_engines=2, colocate=False).colocated
    with pytest.raises(translate.UnsupportedOption, match="FIPO_BENCH_OPENRLHF_COLOCATE=1"):
        translate.Layout(gpus_per_node=2, vllm_engines=1, colocate=True)
    with pytest.raises(translate.UnsupportedOption, match="expected 0 or 1"):
        translate.Layout.from_env({"FIPO_BENCH_OPENRLHF_COLOCATE": "yes"})


def test_driver_stops_at_once_when_the_cluster_lacks_gpus(tmp_path):
    """Without the check OpenRLHF waits forever in pg.ready() (openrlhf/trainer/ray/launcher.py:252).
    The real driver, a real local Ray head with no GPUs: it exits with the numbers."""
    import os
    import shutil
    import tempfile
    from pathlib import Path

    alg, argv = argv_for("dapo", tmp_path, layout=translate.Layout(gpus_per_node=2, vllm_engines=2))
    support = Path(__file__).resolve().parent / "support"  # the flash_attn stand-in OpenRLHF imports
    ray_tmp = tempfile.mkdtemp(prefix="fb-ray-", dir="/tmp")  # short: Ray's socket paths fit in 107 bytes
    env = {**os.environ, "PYTHONPATH": str(support), "RAY_TMPDIR": ray_tmp,
           "RAY_OVERRIDE_RESOURCES": '{"CPU": 2, "GPU": 0}', "RAY_enable_worker_prestart": "0",
           **translate.plugin_env(CONFIG, alg)}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "fipo_bench.backends.openrlhf.driver", "--", *argv],
            env=env, capture_output=True, text=True, timeout=300,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: this job needs 2 GPUs and 3 CPUs in Ray") and "has 0 GPUs" in last, last


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["dapo.overlong_buffer=20"], "dapo.overlong_buffer = 20 must be smaller than the maximum response"),
        (["dapo.overlong_buffer=-1"], "overlong_buffer: expected None or a positive number"),
        (["dapo.no_such_field=1"], "no_such_field"),
        (["max_prompt_length=250"], "exceeds the model's 256 positions"),
        (["tiny_recipe.no_such_field=1"], "config field 'tiny_recipe'"),
    ],
)
def test_dry_run_makes_the_real_runs_checks_and_reports_one_error_line(sets, expected, tmp_path):
    """What failed ~30 s into the OpenRLHF job (PPOTrainer's overlong check), or printed a traceback, is
    one `error:` line from the dry run, with exit status 2, and nothing written."""
    from typer.testing import CliRunner

    from fipo_bench.cli import app

    sets = ["max_response_length=20", "recompute_old_logp=true", *sets]
    argv = ["run", "--backend", "openrlhf", "--algos", "dapo", "--device", "cuda", "--dry-run",
            "--output-dir", str(tmp_path), *[a for s in sets for a in ("--set", s)]]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("preset: tiny "), result.output  # the run's first line names its preset
    assert len(lines) == 2 and lines[1].startswith("error: "), result.output
    assert expected in " ".join(result.output.split()), result.output
    assert not any(tmp_path.iterdir())


def test_readme_openrlhf_dry_run_works_offline_on_a_local_file(tmp_path):
    """README's OpenRLHF dry-run example, as written (its training set a local file), offline; and the
    same example with the preset's Hub dataset while offline is one error line saying to pass a file."""
    import os
    import shlex
    from pathlib import Path

    from fipo_bench.io import write_jsonl

    repo = Path(__file__).resolve().parents[1]
    lines = (repo / "README.md").read_text().replace("\\\n", " ").splitlines()
    (command,) = [line for line in lines if line.startswith("fipo-bench run --backend openrlhf --preset")
                  and "--dry-run" in line]
    argv = shlex.split(command, comments=True)
    at = next(i for i, a in enumerate(argv) if a.startswith("data_dir="))
    if not (repo / argv[at].removeprefix("data_dir=")).is_dir():  # a fresh clone: a copy of the same format
        rows = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\\n#### {i + 1}"}
                for i in range(600)]
        write_jsonl(tmp_path / "gsm8k_test.jsonl", rows)
        argv[at] = f"data_dir={tmp_path}"
    env = {k: v for k, v in os.environ.items() if k != "FIPO_BENCH_DATA"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")

    def run(args):
        return subprocess.run(
            [sys.executable, "-m", "fipo_bench.cli", *args[1:], "--output-dir", str(tmp_path / "results")],
            cwd=repo, env=env, capture_output=True, text=True, timeout=300,
        )

    result = run(argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("-m fipo_bench.backends.openrlhf.driver") == 3  # grpo, dapo, fipo
    hub = argv[: argv.index("--dataset")] + argv[at + 1 :]  # no --dataset gsm8k --set data_dir=...
    result = run(hub)  # the preset's own training set: DAPO-Math-17k from the Hub
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    preset_line, error = output.strip().split("\n", 1)
    assert preset_line.startswith("preset: qwen2.5-7b-math (--preset"), output
    assert error.startswith("error: config field 'dataset'"), output
    assert "--dataset FILE" in " ".join(output.split()), output
