"""RunConfig + algorithm -> the command line of OpenRLHF 0.11's Ray PPO trainer (openrlhf.cli.train_ppo_ray).

Pure: no ray, torch or openrlhf import. The flags follow OpenRLHF's dotted argument names (read from
its 0.11.2 parser; tests/test_openrlhf_translate.py parses every emitted flag with the real parser).
Each algorithm's flags are derived from its hyperparameters, not its name (`openrlhf_args`); a setting
OpenRLHF cannot express raises `UnsupportedOption` naming it.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Read by the plugin in every Ray worker. Every hyperparameter travels in FIPO_BENCH_ALGO_HPARAMS (the
# plugin rebuilds the algorithm from it), including those the command line also carries.
ENV_ALGO = "FIPO_BENCH_ALGO"
ENV_HPARAMS = "FIPO_BENCH_ALGO_HPARAMS"
ENV_MAX_STEPS = "FIPO_BENCH_MAX_STEPS"
ENV_MAX_GEN_BATCHES = "FIPO_BENCH_MAX_GEN_BATCHES"
ENV_START_STEP = "FIPO_BENCH_START_STEP"  # rollout steps already done (a resumed run)
ENV_REWARD_TASK = "FIPO_BENCH_REWARD_TASK"  # which checker: "math" (fipo_bench.evals) or "tiny"
# The environment OpenRLHF's own train() would give its Ray job; ours starts Ray first, so it passes them.
OPENRLHF_ENV_DEFAULTS = {
    "TOKENIZERS_PARALLELISM": "true",
    "NCCL_DEBUG": "WARN",
    "RAY_ENABLE_ZERO_COPY_TORCH_TENSORS": "1",
}
# The cluster layout is not part of RunConfig (it does not change results): environment variables.
ENV_LAYOUT = {
    "num_nodes": "FIPO_BENCH_OPENRLHF_NODES",
    "gpus_per_node": "FIPO_BENCH_OPENRLHF_GPUS_PER_NODE",
    "vllm_engines": "FIPO_BENCH_OPENRLHF_VLLM_ENGINES",
    "vllm_tensor_parallel": "FIPO_BENCH_OPENRLHF_VLLM_TP",
    "colocate": "FIPO_BENCH_OPENRLHF_COLOCATE",
}
ENV_EXTRA_ARGS = "FIPO_BENCH_OPENRLHF_ARGS"


class UnsupportedOption(ValueError):
    """A run setting OpenRLHF cannot express; the message names the setting."""


@dataclass(frozen=True)
class Layout:
    """Where OpenRLHF places its models. Defaults: one node of 8 GPUs, everything colocated."""

    num_nodes: int = 1
    """Nodes for the actor (and reference) model."""
    gpus_per_node: int = 8
    """GPUs per node for the actor (and reference) model."""
    vllm_engines: int = 8
    """vLLM rollout engines."""
    vllm_tensor_parallel: int = 1
    """GPUs per vLLM engine."""
    colocate: bool | None = None
    """vLLM shares the actor's GPUs (--train.colocate_all); None: when the GPU counts are equal."""

    def __post_init__(self) -> None:
        if self.colocate and self.actor_gpus != self.vllm_engines * self.vllm_tensor_parallel:
            raise UnsupportedOption(
                f"${ENV_LAYOUT['colocate']}=1: colocating needs as many vLLM GPUs (engines x tensor parallel "
                f"= {self.vllm_engines * self.vllm_tensor_parallel}) as actor GPUs ({self.actor_gpus})"
            )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Layout:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field_name, var in ENV_LAYOUT.items():
            raw = environ.get(var)
            if raw is None:
                continue
            if field_name == "colocate":
                if raw not in ("0", "1"):
                    raise UnsupportedOption(f"${var}: expected 0 or 1, got {raw!r}")
                values[field_name] = raw == "1"
            elif not raw.isdigit() or int(raw) < 1:
                raise UnsupportedOption(f"${var}: expected an integer >= 1, got {raw!r}")
            else:
                values[field_name] = int(raw)
        return cls(**values)

    @property
    def actor_gpus(self) -> int:
        return self.num_nodes * self.gpus_per_node

    @property
    def colocated(self) -> bool:
        """vLLM shares the actor's GPUs (OpenRLHF's --train.colocate_all needs the counts to match)."""
        if self.colocate is not None:
            return self.colocate
        return self.actor_gpus == self.vllm_engines * self.vllm_tensor_parallel


@dataclass(frozen=True)
class RunPaths:
    """Files of one algorithm x seed run (results/README.md), as OpenRLHF sees them."""

    run_dir: Path
    reward_file: Path
    prompts: Path
    """The training prompts (jsonl of {"prompt", "answer"}), shared by every run of the matrix."""

    @property
    def tensorboard(self) -> Path:
        return self.run_dir / "openrlhf" / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def final_model(self) -> Path:
        return self.run_dir / "checkpoints" / "final"


def prompts_needed(config, alg) -> int:
    """Prompts a run may draw: num_steps batches, times max_gen_batches under dynamic sampling (the plugin
    stops at num_steps, so OpenRLHF's passes over the data only need to hold this many)."""
    factor = config.max_gen_batches if alg.dynamic_sampling else 1
    return config.num_steps * config.rollout_batch_size * factor


def check_critic(config, alg) -> None:
    """What OpenRLHF's critic path cannot run, named by field."""
    steps = alg.value_pretrain_steps
    if steps >= config.num_steps:
        raise UnsupportedOption(
            f"{alg.name}.value_pretrain_steps = {steps}: in the OpenRLHF backend value pretraining takes "
            f"the run's first steps (--critic.freezing_steps), so it must be below num_steps = "
            f"{config.num_steps}; lower it (--set {alg.name}.value_pretrain_steps=N) or raise --steps"
        )
    if alg.dynamic_sampling:
        # The actor's loader is patched for short batches (patches.patch_ppo_actor), the critic's is not:
        # OpenRLHF's critic ppo_train drops a short last micro-batch (drop_last=True), and with value
        # pretraining the frozen actor's share of each batch is trimmed by a size that must not vary.
        raise UnsupportedOption(
            f"{alg.name}: dynamic_sampling with a critic: dynamic sampling varies the batch, which "
            f"OpenRLHF's critic trainer (drop_last) and value pretraining need fixed; turn it off "
            f"(--set {alg.name}.dynamic_sampling=false) or use --backend local"
        )
    if alg.value_clip is None:
        raise UnsupportedOption(
            f"{alg.name}.value_clip = None: OpenRLHF's --critic.value_clip takes a number; set one"
        )


def check_keep_group_is_range(alg, group_size: int) -> None:
    """OpenRLHF keeps a group iff 0 < mean(scores) < 1; `alg.keep_group` must agree on 0/1 scores."""
    for correct in range(group_size + 1):
        scores = [1.0] * correct + [0.0] * (group_size - correct)
        openrlhf_keeps = 0 < correct < group_size
        if bool(alg.keep_group(scores)) != openrlhf_keeps:
            raise UnsupportedOption(
                f"{alg.name}.keep_group: OpenRLHF's dynamic filtering keeps a group iff 0 < accuracy < 1, "
                f"but keep_group({scores}) is {not openrlhf_keeps}"
            )


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def openrlhf_args(
    config, alg, seed: int, paths: RunPaths, layout: Layout, *, model: str, num_prompts: int
) -> list[str]:
    """The argument list of `python -m openrlhf.cli.train_ppo_ray` for one algorithm x seed.

    num_prompts: rows of the prompt file; OpenRLHF passes over it (episodes) until the run has had
    `prompts_needed` prompts, and its learning-rate schedule spans all those passes.
    What each algorithm becomes (derived from its hyperparameters, not from its name):
    - advantages: `group_norm` (no critic, groups of `samples_per_prompt`); the plugin replaces the
      computation with `alg.shape_rewards` + `alg.advantages`, so the overlong flags only mirror the
      algorithm (OpenRLHF's own penalty is the same formula, and is what a run without the plugin does);
    - loss: `--actor.eps_clip_low_high`, `--actor.dual_clip` (where the algorithm has them; the plugin's
      loss checks they arrive unchanged), `--actor.loss_agg_mode` (token-mean, else seq-mean-token-mean, to
      which the plugin rescales the token-sum modes); the plugin replaces the loss with `alg.token_loss`
      under OpenRLHF's own token normalisation, whatever the algorithm's surrogate;
    - KL (kl_coef > 0, GRPO): `--algo.kl.use_loss`, k3, `init_coef = kl_coef`, which makes OpenRLHF build
      the reference model; kl_coef = 0 (DAPO, FIPO): `init_coef 0`, no reference model;
    - dynamic sampling: `--algo.dynamic_filtering_enable`, range (0, 1) on the reward file's `scores`
      (correctness), after checking that `alg.keep_group` is exactly that rule.
    - a critic (`alg.needs_critic`: PPO, VC-PPO, VAPO): `gae`, which makes OpenRLHF build its critic actors
      from the base checkpoint (`--critic.model_name_or_path`, a value head on the last hidden state) with
      their own AdamW at `critic_lr_scale` x the actor's learning rate; `--algo.advantage.gamma/lambd` and
      `--critic.value_clip` mirror the algorithm (the plugin computes the advantages and returns with
      `alg.critic_rollout`, per-response lambdas included, and replaces OpenRLHF's `ValueLoss` with
      `alg.value_loss`'s terms). Value pretraining is OpenRLHF's own `--critic.freezing_steps`: the actor
      stays frozen for the run's first `value_pretrain_steps` steps (so those rollouts are the initial
      policy's) while the critic trains; they count among `num_steps`, so the policy takes
      num_steps - value_pretrain_steps update steps.
    """
    if num_prompts < config.rollout_batch_size:
        raise UnsupportedOption(
            f"config field 'rollout_batch_size' = {config.rollout_batch_size}: the training "
            f"data has only {num_prompts} prompts"
        )
    hp = alg.hyperparameters()
    n = config.samples_per_prompt
    if config.dtype not in ("auto", "bfloat16"):
        raise UnsupportedOption(
            f"config field 'dtype' = {config.dtype!r}: OpenRLHF trains in bf16 or fp16 "
            f"(use dtype 'auto' or 'bfloat16')"
        )
    if config.device == "cpu":
        raise UnsupportedOption(
            "config field 'device' = 'cpu': the OpenRLHF backend trains on GPUs (use device 'auto' or 'cuda')"
        )
    if not config.recompute_old_logp:
        raise UnsupportedOption(
            "config field 'recompute_old_logp' = false: OpenRLHF always recomputes old_logp by a forward "
            "pass after sampling (set recompute_old_logp=true)"
        )
    train_batch = config.mini_batch_size * n  # samples per optimizer step
    if train_batch % layout.actor_gpus:
        raise UnsupportedOption(
            f"config field 'mini_batch_size': {config.mini_batch_size} prompts x {n} samples "
            f"do not split over {layout.actor_gpus} actor GPUs"
        )
    micro = config.micro_batch_size or train_batch // layout.actor_gpus
    episodes = math.ceil(prompts_needed(config, alg) / num_prompts)
    updates = num_prompts * n // train_batch * episodes  # OpenRLHF's schedule length, in optimizer steps
    # OpenRLHF warms up for ceil(updates * ratio) optimizer steps; half a step below the target keeps float
    # rounding from adding one.
    warmup_ratio = max(config.warmup_steps * config.updates_per_step - 0.5, 0.0) / updates

    args: dict[str, Any] = {
        # models and data
        "actor.model_name_or_path": model,
        "data.prompt_dataset": paths.prompts,
        "data.input_key": "prompt",
        "data.label_key": "answer",
        "data.max_samples": num_prompts,
        "data.max_len": config.max_prompt_length + config.max_response_length,
        "rollout.max_new_tokens": config.max_response_length,
        "reward.remote_url": paths.reward_file,
        # batch shape: rollout_batch_size prompts x n samples, mini_batch_size prompts per update, 1 epoch
        "rollout.batch_size": config.rollout_batch_size,
        "rollout.n_samples_per_prompt": n,
        "train.batch_size": train_batch,
        "train.micro_batch_size": micro,
        "rollout.micro_batch_size": micro,
        "train.max_epochs": 1,
        "train.num_episodes": episodes,
        "rollout.temperature": config.temperature,
        "rollout.top_p": config.top_p,
        "train.seed": seed,
        # optimizer: AdamW with torch's default betas (as the local backend), constant lr after warm-up
        "actor.adam.lr": config.lr,
        "actor.adam.betas": (0.9, 0.999),
        "actor.adam.weight_decay": config.weight_decay,
        "actor.max_norm": config.grad_clip,
        "actor.lr_scheduler": "constant_with_warmup",
        "actor.lr_warmup_ratio": warmup_ratio,
        "ds.param_dtype": "bf16",
        # algorithm
        "algo.advantage.estimator": "group_norm",
        "actor.policy_loss_type": "ppo",
        # OpenRLHF's two modes; the plugin rescales the token-sum modes to seq-mean-token-mean (exact)
        "actor.loss_agg_mode": "token-mean" if alg.loss_agg == "token-mean" else "seq-mean-token-mean",
        "actor.entropy_coef": 0.0,  # 0 = log the entropy without a bonus
    }
    if "clip_low" in hp and "clip_high" in hp:
        args["actor.eps_clip_low_high"] = (hp["clip_low"], hp["clip_high"])
    if hp.get("dual_clip") is not None:
        args["actor.dual_clip"] = hp["dual_clip"]
    if alg.needs_reference:
        args.update({"algo.kl.use_loss": True, "algo.kl.estimator": "k3", "algo.kl.init_coef": hp["kl_coef"]})
    else:
        args["algo.kl.init_coef"] = 0.0
    if alg.needs_critic:
        check_critic(config, alg)
        args.update(
            {
                "algo.advantage.estimator": "gae",
                "algo.advantage.gamma": hp["gamma"],
                "algo.advantage.lambd": hp["lam_critic"],  # the plugin computes the actor's lambdas itself
                "critic.model_name_or_path": model,
                "critic.value_clip": hp["value_clip"],
                "critic.adam.lr": config.lr * hp["critic_lr_scale"],
                "critic.adam.betas": (0.9, 0.999),
                "critic.adam.weight_decay": config.weight_decay,
                "critic.max_norm": config.grad_clip,
                # constant from the first step, as the local backend's critic (and verl's critic default):
                # value pretraining is what prepares it, not a warm-up
                "critic.lr_scheduler": "constant_with_warmup",
                "critic.lr_warmup_ratio": 0.0,
                # OpenRLHF trains the actor at global_step > freezing_steps, its first step being
                # global_step 0 (logged as step 1): P - 1 freezes the first P steps, -1 (its default) none.
                "critic.freezing_steps": hp["value_pretrain_steps"] - 1,
            }
        )
    if alg.dynamic_sampling:
        check_keep_group_is_range(alg, n)
        args.update({"algo.dynamic_filtering_enable": True, "algo.dynamic_filtering_range": (0.0, 1.0)})
    if hp.get("overlong_buffer") is not None:
        args.update(
            {
                "reward.overlong_buffer_len": float(hp["overlong_buffer"]),
                "reward.overlong_penalty_factor": float(hp.get("overlong_factor", 1.0)),
            }
        )
    # layout
    args.update(
        {
            "actor.num_nodes": layout.num_nodes,
            "actor.num_gpus_per_node": layout.gpus_per_node,
            "ref.num_nodes": layout.num_nodes,
            "ref.num_gpus_per_node": layout.gpus_per_node,
            **(
                {"critic.num_nodes": layout.num_nodes, "critic.num_gpus_per_node": layout.gpus_per_node}
                if alg.needs_critic
                else {}
            ),
            "vllm.num_engines": layout.vllm_engines,
            "vllm.tensor_parallel_size": layout.vllm_tensor_parallel,
        }
    )
    if layout.colocated:
        args.update(
            {
                "train.colocate_all": True,
                "vllm.enable_sleep": True,
                "ds.enable_sleep": True,
                "vllm.gpu_memory_utilization": 0.6,
            }
        )
    # outputs: HF checkpoints every eval/checkpoint interval (evaluated afterwards by fipo-bench eval)
    save_every = math.gcd(config.eval_every, config.checkpoint_every)
    args.update(
        {
            "ckpt.path": paths.checkpoints,
            "ckpt.output_dir": paths.final_model,
            "ckpt.save_hf": True,
            "ckpt.save_steps": save_every or -1,
            "ckpt.max_num": 1,
            "logger.tensorboard_dir": paths.tensorboard,
            "logger.wandb.run_name": paths.run_dir.name,
        }
    )
    if (paths.checkpoints / "_actor").is_dir():
        args["ckpt.load_enable"] = True  # resume from OpenRLHF's own checkpoint

    argv: list[str] = []
    for key, value in args.items():
        if value is True:
            argv.append(f"--{key}")
        elif isinstance(value, tuple):
            argv += [f"--{key}", *(_fmt(v) for v in value)]
        else:
            argv += [f"--{key}", _fmt(value) if not isinstance(value, Path) else str(value)]
    return argv + extra_args(argv)


def extra_args(argv: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """User flags from $FIPO_BENCH_OPENRLHF_ARGS (e.g. "--ds.zero_stage 3"); none may redefine ours."""
    environ = os.environ if environ is None else environ
    extra = shlex.split(environ.get(ENV_EXTRA_ARGS, ""))
    ours = {a for a in argv if a.startswith("--")}
    clash = sorted(a for a in extra if a.startswith("--") and a in ours)
    if clash:
        raise UnsupportedOption(
            f"${ENV_EXTRA_ARGS} sets {', '.join(clash)}, which fipo-bench sets from the run "
            f"config and algorithm; change those there"
        )
    return extra


def plugin_env(config, alg, reward_task: str = "math") -> dict[str, str]:
    """Environment variables the plugin (every Ray worker) and the reward file read."""
    return {
        ENV_ALGO: alg.name,
        ENV_HPARAMS: json.dumps(alg.hyperparameters(), sort_keys=True),
        ENV_MAX_STEPS: str(config.num_steps),
        ENV_MAX_GEN_BATCHES: str(config.max_gen_batches if alg.dynamic_sampling else 1),
        ENV_REWARD_TASK: reward_task,
    }
