"""Named run configurations (`fipo-bench run --preset NAME`): partial RunConfig values over its defaults.

Sources of the published numbers:
  [DAPO]  Yu et al., "DAPO: An Open-Source LLM Reinforcement Learning System at Scale", arXiv 2503.14476,
          Sec. 5.1 (training details) and verl's recipe/dapo/run_dapo_qwen2.5_32b.sh.
  [FIPO]  Qwen Pilot, "FIPO", arXiv 2603.19835, Sec. 5 (experimental setup) and its released scripts;
          the numbers as summarised in ../shared/DESIGN.md ("Presets").
  [zoo]   The other algorithms' published settings are their defaults (each module's docstring). Where
          they depend on the run: Dr. GRPO divides by the maximum generation length (the authors' oat,
          `generate_max_length`), so `max_tokens_norm` = the preset's max_response_length; KL-Cov's share
          is 0.2 % in the authors' 7B recipe (the default) and 0.02 % in their 32B one
          (PRIME-RL/Entropy-Mechanism-of-RL recipe/dapo/32b_kl_cov.sh, k_percent=0.02).

Identical conditions when the published mini-batches differ (DAPO 32 prompts, FIPO 64): a comparison
uses ONE `mini_batch_size` for every algorithm of the run, so all algorithms take the same number of
optimizer steps on the same rollout data and any difference comes from the objective alone. The large
presets use DAPO's 32 (the baseline's published schedule, 16 updates per rollout batch; FIPO's weights
act from the second update on, so the more off-policy schedule is the harder test for FIPO).
FIPO's own published schedule is reproduced with `--set mini_batch_size=64` (8 updates per batch).
"""

from __future__ import annotations

from typing import Any

# The published large-scale recipe shared by DAPO and FIPO (both papers, verl DAPO recipe).
_PUBLISHED: dict[str, Any] = {
    "rollout_batch_size": 512,  # [DAPO] Sec. 5.1: 512 prompts per step; [FIPO] same
    "samples_per_prompt": 16,  # [DAPO] Sec. 5.1: 16 responses per prompt
    "mini_batch_size": 32,  # [DAPO] Sec. 5.1: mini-batch 512 responses = 32 prompts x 16; FIPO uses 64
    "max_prompt_length": 2048,  # [DAPO] verl recipe: max_prompt_length = 2 * 1024
    "max_response_length": 20480,  # [DAPO] Sec. 5.1: 16,384 expected + 4,096 soft-punish cache
    "temperature": 1.0,  # [DAPO] verl recipe: rollout temperature 1.0
    "top_p": 1.0,  # [DAPO] verl recipe: top_p 1.0
    "lr": 1e-6,  # [DAPO] Sec. 5.1: AdamW, constant lr 1e-6
    "warmup_steps": 10,  # [DAPO] Sec. 5.1: linear warm-up over 20 rollout steps; verl recipe: 10
    "weight_decay": 0.1,  # [DAPO] verl recipe: optim.weight_decay=0.1
    "grad_clip": 1.0,  # [DAPO] verl recipe: actor.grad_clip=1.0
    "max_gen_batches": 10,  # [DAPO] verl recipe: max_num_gen_batches=10
    "recompute_old_logp": True,  # bf16 sampling drifts from the training forward (see RunConfig)
    "eval_datasets": ("aime24",),
    "eval_k": 32,  # [DAPO]/[FIPO] AIME avg@32
    "eval_temperature": 1.0,  # [DAPO] evaluation: temperature 1.0
    "eval_top_p": 0.7,  # [DAPO] evaluation: top-p 0.7
    "eval_every": 5,  # verl recipe: test_freq=5
    "checkpoint_every": 5,
    "dataset": "dapo-math-17k",  # [DAPO] training set, BytedTsinghua-SIA/DAPO-Math-17k on the Hub
    "prompt_template": "dapo",
    # Overlong reward shaping buffer: [DAPO] Sec. 3.4 / verl recipe overlong_buffer_len = 4 * 1024.
    "algo_overrides": {name: {"overlong_buffer": 4096} for name in ("dapo", "fipo", "fipo-7b")},
}



def _with_zoo(overrides: dict[str, dict], max_response_length: int) -> dict[str, dict]:
    """`overrides` plus the [zoo] settings that follow from the run's maximum response length."""
    return {**overrides, "dr-grpo": {"max_tokens_norm": max_response_length}}


_PUBLISHED["algo_overrides"] = _with_zoo(_PUBLISHED["algo_overrides"], _PUBLISHED["max_response_length"])

# The preset of a run that names none: the built-in model's, or, when a model is given, MODEL_PRESET.
BUILTIN_PRESET = "tiny"
MODEL_PRESET = "small-model"

_TINY_SUMS: dict[str, Any] = {
        "model": None,
        "dataset": None,
        "eval_datasets": ("tiny",),
        "num_steps": 60,
        "rollout_batch_size": 16,
        "samples_per_prompt": 8,
        "mini_batch_size": 8,  # two updates per rollout batch, so FIPO's weights act on the second
        "max_prompt_length": 48,
        # Longest reference chain: 53 tokens with terms up to 20 (59 up to 99), EOS included.
        "max_response_length": 72,
        "temperature": 1.0,
        "top_p": 1.0,
        # Measured (issue 3): 1e-4 takes every algorithm from 0.23 to 0.80-0.86 in 60 steps; 3e-4 learnt
        # slower in a trial (terms up to 99); 1e-3 collapses (prototype).
        "lr": 1e-4,
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "grad_clip": 1.0,
        "max_gen_batches": 10,
        # Recompute old_logp with the training forward, as verl and OpenRLHF do. On CPU in float32 the
        # sampler's log-probs already agree with it to rounding (benchmarks/logp_gap.py, 256 responses of
        # this preset: mean |gap| 3e-7, max 9e-6), but `--device cuda` or dtype=bfloat16 turns on bf16
        # autocast, where the gap (on CPU bf16: mean 5e-4, p99 1.6e-2, max 4e-2) alone lifts FIPO's
        # first-update weights, which must be exactly 1, above 1.01 on 9.5% of tokens (max 1.045). The
        # pass is cheap: only the later updates' rows, in the training pass's length buckets (~9% of a
        # step in benchmarks/bench_trainer_vs_trl.py).
        "recompute_old_logp": True,
        "eval_every": 10,
        "eval_k": 1,
        "eval_temperature": 1.0,
        "eval_top_p": 0.7,
        "eval_limit": 0,
        "checkpoint_every": 10,
        # Resume needs the newest checkpoint only; all of them took 223 MB per default matrix.
        "keep_checkpoints": 1,
        "device": "cpu",
        # Overlong shaping over the last 12 tokens (DAPO: 4096 of 20480): it starts at 60 tokens, past
        # the longest reference chain, so only runaway responses are penalised, as at scale.
        "algo_overrides": _with_zoo(
            {name: {"overlong_buffer": 12} for name in ("dapo", "fipo", "fipo-7b")}, 72),
        "tiny_task": {"name": "sums"},
        "tiny_recipe": {},
}

# The built-in chain task (fipo_bench.tiny.ChainTask): reasoning length can grow step by step under RL,
# with several updates per rollout batch so clipping and FIPO's Future-KL weights act. Every value below
# is set by measuring the base model and the RL regime (benchmarks/tiny_task_design.py; issue 20), never
# by which algorithm wins.
_TINY_CHAIN: dict[str, Any] = {
    **_TINY_SUMS,
    "num_steps": 60,
    "rollout_batch_size": 16,
    "samples_per_prompt": 8,
    # 4 updates per rollout batch (issue 20: >= 4; FIPO's 32B recipe 8, DAPO's 16). Measured, mean over
    # the 60 steps of the default run (lr 1e-4): clip fraction (high + low) GRPO 0.32%, DAPO 0.42%, FIPO
    # 0.41%; ppo_kl 1.5e-3, 1.1e-3, 1.1e-3. The same lr at 2 updates per batch gave 0.05% and 2e-4 on the
    # sums task (issue 20's table).
    "mini_batch_size": 4,
    "max_prompt_length": 24,  # 10 single digits and their "+": 20 tokens
    # The full chain of 10 terms is ~70 tokens with EOS; the base model's mean is 9.7 tokens at the
    # evaluation setting (benchmarks/tiny_task_design.py), so 96 is ~10x it (issue 20: >= 4x).
    "max_response_length": 96,
    "lr": 1e-4,
    "eval_every": 10,
    "checkpoint_every": 10,
    # Overlong shaping over the last 16 tokens: it starts at 80, past the longest reference chain (~70).
    # FIPO's half-life 8 tokens, about one step of the chain (``15+7=22;`` is 8 tokens): the
    # paper's 32 tokens is a local window of its 4k-10k-token responses (under 1%), while here responses
    # grow from ~10 to ~50 tokens, so 32 would weigh nearly the whole rest of the response alike.
    # Measured over the 60 steps of the default (only the half-life changed): at 32 the weights averaged
    # 1.025 and hit the 1.2 cap on 5.4% of tokens; at 8, 1.016 and 2.0%: the mechanism acts at both, and
    # the choice rests on the scale argument above, not on the outcome (eval 0.387 at 32, 0.379 at 8).
    "algo_overrides": _with_zoo(
        {name: {"overlong_buffer": 16, **({"half_life": 8.0} if name != "dapo" else {})}
         for name in ("dapo", "fipo", "fipo-7b")}, 96),
    "tiny_task": {"name": "chain"},
    # Warm-up: mostly full chains first (each further step with chance 0.9), so the model learns to add;
    # then each further step with chance 0.5, so the base model mostly answers after 0-1 steps (53% and
    # 22% of its samples) and writes 3 or more steps in 12% of them (fipo_bench.tiny.warmup).
    "tiny_recipe": {"steps_share_early": 0.9, "steps_share_late": 0.5, "phase_switch": 0.85},
}

PRESETS: dict[str, dict[str, Any]] = {
    # The built-in model and task on a CPU laptop in minutes (issue 20): fipo_bench.tiny.ChainTask.
    "tiny": _TINY_CHAIN,
    # The built-in sums task (the default before issue 20), tuned by measurement in issue 3: see
    # fipo_bench.tiny.SumsTask. Tests that were calibrated on it use this preset.
    "tiny-sums": _TINY_SUMS,
    # The laptop-scale comparison: the tiny testbed over 6 seeds (two runs at a time with Ray), same budget
    # per run as the default. Measured on an idle 2-core machine with a fresh cache: 19 min 13 s in all
    # (warm-up 109 s; 18 runs of 1-3 min); its outcome is in README.md ("The laptop-scale comparison").
    "tiny-study": {**_TINY_CHAIN, "seeds": (0, 1, 2, 3, 4, 5)},
    # A small pretrained model of one's own (--model, 0.1B-1.5B) on one GPU or CPU: the default when
    # --model is given without --preset. The published recipe [DAPO] where it does not depend on scale;
    # batches and lengths cut to what one device trains in minutes per step. Not tuned by measurement.
    MODEL_PRESET: {
        **_PUBLISHED,
        "model": None,  # --model gives it (build_config refuses this preset without one)
        "dataset": None,  # --dataset gives it: a Hub download is no default on an offline machine
        "num_train_problems": 0,  # all rows of the dataset
        "num_steps": 100,
        # 8 prompts x 8 samples = 64 responses per step (1/128 of [DAPO]'s 512 x 16); groups of 8 as the
        # qwen2.5-0.5b preset, enough for a group of a weak model to hold a right answer now and then.
        "rollout_batch_size": 8,
        "samples_per_prompt": 8,
        # 2 updates per step, as the tiny preset: FIPO's weights act from the second update on.
        "mini_batch_size": 4,
        # Gradient accumulation over 4 sequences: their float32 logits (4 x 2k tokens x a 152k vocab,
        # Qwen2.5's) take ~5 GB; SmolLM2's 49k vocab ~1.6 GB.
        "micro_batch_size": 4,
        # Prompts as the model sees them (chat template + the dapo template, which the prompt builder
        # applies whenever the tokenizer has a chat template), measured with SmolLM2's tokenizer on the
        # offline copies: GSM8K max 275 tokens, AMC23 327, AIME24 505, MATH-500 p99 488 (max 1000),
        # AIME25 926. 1024 keeps them all but one; a question that does not fit is dropped with a note.
        "max_prompt_length": 1024,
        # A small model's chain of thought on GSM8K/MATH-level problems fits in 1k tokens; [DAPO]'s 20k is
        # for 32B models on AIME, and a CPU step is dominated by generating and training on these.
        "max_response_length": 1024,  # and at evaluation (eval_max_response_length 0: the same)
        # [DAPO]'s lr 1e-6 is for 7B-32B models at 512 prompts per step; small models take larger steps
        # (tests/test_real_model.py moves SmolLM2-135M visibly at 1e-5 in 2 steps). 3e-6: between the two.
        "lr": 3e-6,
        # Dynamic sampling: at most 3 generation batches per step, not [DAPO]'s 10: a small model's groups
        # are often all wrong, and each extra batch costs a whole generation on one device.
        "max_gen_batches": 3,
        # [DAPO]'s protocol (T 1.0, top-p 0.7) with 4 samples per problem, not 32: avg@4 on one device.
        "eval_k": 4,
        "eval_every": 25,
        "checkpoint_every": 25,
        "keep_checkpoints": 1,  # resume needs the newest; each holds the optimizer state (~6 GB at 0.5B)
        "device": "auto",
        # Overlong shaping over the last quarter (as qwen2.5-0.5b: 1024 of 4096; [DAPO]: 4096 of 20480).
        "algo_overrides": _with_zoo({name: {"overlong_buffer": 256} for name in ("dapo", "fipo", "fipo-7b")},
                                    1024),
    },
    # One GPU, Qwen2.5-0.5B: the published recipe scaled down (batch 64 x 8, 4k responses) so a step
    # takes about a minute; lr raised because the published 1e-6 barely moves a 0.5B model in 100 steps.
    "qwen2.5-0.5b": {
        **_PUBLISHED,
        "model": "Qwen/Qwen2.5-0.5B",
        "num_steps": 100,
        "rollout_batch_size": 64,
        "samples_per_prompt": 8,
        "mini_batch_size": 16,  # 4 updates per rollout batch, as the 32B recipe's ratio 512/32 scaled down
        "micro_batch_size": 4,  # logits of 4 x 4k tokens x 152k vocab in float32 are ~10 GB
        "max_prompt_length": 1024,
        "max_response_length": 4096,
        "lr": 1e-6,
        "warmup_steps": 10,
        "eval_k": 8,
        "eval_max_response_length": 4096,
        "num_train_problems": 0,
        "device": "cuda",
        "algo_overrides": _with_zoo(
            {name: {"overlong_buffer": 1024} for name in ("dapo", "fipo", "fipo-7b")}, 4096),
    },
    # [FIPO] Qwen2.5-Math-7B: the published recipe with FIPO's 7B settings (weight range [0.8, 1.2],
    # safety threshold 3; DESIGN.md "FIPO"). Qwen2.5-Math-7B ships a 4k context: raise
    # max_position_embeddings in its config.json (common practice for the DAPO recipes) before training.
    "qwen2.5-7b-math": {
        **_PUBLISHED,
        "model": "Qwen/Qwen2.5-Math-7B",
        "num_steps": 500,
        "algo_overrides": {
            **_PUBLISHED["algo_overrides"],
            "fipo": {**_PUBLISHED["algo_overrides"]["fipo"], "weight_low": 0.8, "weight_high": 1.2,
                     "safety_threshold": 3.0},
        },
    },
    # [DAPO]/[FIPO] Qwen2.5-32B-Base on DAPO-Math-17k: the main published comparison.
    "qwen2.5-32b-dapo": {
        **_PUBLISHED,
        "model": "Qwen/Qwen2.5-32B",
        "num_steps": 1000,
        "algo_overrides": {**_PUBLISHED["algo_overrides"], "kl-cov": {"cov_ratio": 2e-4}},  # [zoo] 32B
    },
}


def get_preset(name: str) -> dict[str, Any]:
    """A copy of the preset's values; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    import copy

    return copy.deepcopy(PRESETS[name])
