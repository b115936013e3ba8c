"""The one-process RL trainer of `fipo-bench run --backend local` (CPU or one GPU).

`LocalTrainer.train_step` runs one step in the phases of the algorithm (sample, filter, score,
advantage, update); groups and rollouts travel between them as typed records (Group, GenerationBatch,
Rollout). The trainer knows algorithms only through their contract (fipo_bench.algorithms.base.Algorithm):
no algorithm or algorithm-specific metric is named here. Pure tensor helpers (`response_logp`) are
separate from orchestration.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fipo_bench import models
from fipo_bench.backends.local.critic import ValueModel, response_values
from fipo_bench.results import CRITIC_DIR, TRAINER_STATE
from fipo_bench.sampling import Samples, left_pad, sample, scoring_inputs
from fipo_bench.tasks import REWARD_CORRECT, REWARD_INCORRECT, TaskData

# Forward passes per micro-batch, over rows sorted by length: padding (and its compute) shrinks from
# (longest - mean) per row to roughly the spread inside a bucket; buckets stay large enough that the
# per-call overhead does not dominate.
LENGTH_BUCKETS, MIN_BUCKET_ROWS = 4, 8


class NonFiniteLossError(RuntimeError):
    """A loss or gradient norm was NaN/inf; the run stops and keeps its last good checkpoint."""


def seed_for(*parts: Any) -> int:
    """A 63-bit seed from any parts (stable across processes, unlike hash())."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# -- prompt order ---------------------------------------------------------------------------------------


class PromptOrder:
    """Which training problems step s, generation batch g uses: a pure function of (seed, s, g).

    Generation batch 0 of step s takes positions [(s-1)B, sB) of a main stream of seeded epoch
    permutations; refills (g >= 1, dynamic sampling only) come from a separate stream. So every
    algorithm trains on the same prompts at the same step whether or not it refills, and a resumed run
    needs no data-loader state.
    """

    def __init__(self, num_problems: int, batch_size: int, max_gen_batches: int, seed: int):
        self.n, self.batch, self.seed = num_problems, batch_size, seed
        self.refills = max(1, max_gen_batches - 1)
        self._perms: dict[tuple[str, int], list[int]] = {}

    def _at(self, stream: str, position: int) -> int:
        epoch, offset = divmod(position, self.n)
        key = (stream, epoch)
        if key not in self._perms:
            if len(self._perms) > 8:
                self._perms.clear()
            g = torch.Generator().manual_seed(seed_for("prompt-order", self.seed, stream, epoch))
            self._perms[key] = torch.randperm(self.n, generator=g).tolist()
        return self._perms[key][offset]

    def indices(self, step: int, gen_batch: int) -> list[int]:
        if gen_batch == 0:
            start, stream = (step - 1) * self.batch, "main"
        else:
            start, stream = ((step - 1) * self.refills + gen_batch - 1) * self.batch, "refill"
        return [self._at(stream, start + i) for i in range(self.batch)]


# -- pure tensor helpers ------------------------------------------------------------------------------


def response_logp(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                  response_mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """log pi(response token | prefix) at `temperature`: [N, P] left-padded prompts + [N, R] responses
    -> [N, R] float32 (0 on padding)."""
    prompt_len, response_len = prompt_ids.shape[1], response_ids.shape[1]
    # The logits at position P-1+t predict response token t; the last position predicts nothing.
    logits = model(**scoring_inputs(prompt_ids, prompt_mask, response_ids, response_mask),
                   logits_to_keep=response_len + 1).logits[:, :-1]  # [N, R, V]
    assert logits.shape[1] == response_len, (logits.shape, prompt_len, response_len)
    logits = logits.float() / temperature
    token_logits = logits.gather(-1, response_ids[..., None]).squeeze(-1)
    return (token_logits - logits.logsumexp(-1)) * response_mask


class StepMetrics:
    """The algorithm's metrics of every micro-batch of one step, reduced the way each name says:
    `*_max` -> the maximum, `*_min` -> the minimum, anything else (means, fractions of tokens) -> the
    mean weighted by each micro-batch's response tokens. (A plain mean of per-update maxima would report
    ~1.1 for FIPO weights that reached 1.2.)"""

    def __init__(self) -> None:
        self.values: dict[str, list[tuple[float, float]]] = {}

    def add(self, metrics: dict[str, float], tokens: float) -> None:
        for key, value in metrics.items():
            self.values.setdefault(key, []).append((value, tokens))

    def reduced(self) -> dict[str, float]:
        out = {}
        for key, pairs in self.values.items():
            values = [v for v, _ in pairs]
            if key.endswith("_max") or key == "max":
                out[key] = max(values)
            elif key.endswith("_min") or key == "min":
                out[key] = min(values)
            else:
                total = sum(t for _, t in pairs)
                out[key] = sum(v * t for v, t in pairs) / total if total > 0 else sum(values) / len(values)
        return out


# -- the records of one step --------------------------------------------------------------------------


@dataclass
class Group:
    """One prompt's G samples as generated, with the checker's verdicts."""

    prompt_ids: torch.Tensor  # [G, P] left-padded (the same prompt G times)
    prompt_mask: torch.Tensor  # [G, P]
    response_ids: torch.Tensor  # [G, R]
    mask: torch.Tensor  # [G, R] float32
    logp: torch.Tensor  # [G, R] the sampler's log-probs
    correct: torch.Tensor  # [G] bool: the checker says right and the response ended (not cut at the limit)
    lengths: torch.Tensor  # [G] response tokens


@dataclass
class GenerationBatch:
    """One generation call: B prompts x G samples of the current policy, checked."""

    samples: Samples  # rows grouped by prompt (G consecutive rows per prompt)
    correct: torch.Tensor  # [B*G] bool, as Group.correct
    groups: list[Group]


@dataclass
class Rollout:
    """The rows one step trains on: kept groups, G consecutive rows per group. Filled phase by phase:
    `score` gives the rewards, `estimate_advantages` the advantages."""

    prompt_ids: torch.Tensor  # [N, P] left-padded
    prompt_mask: torch.Tensor  # [N, P]
    response_ids: torch.Tensor  # [N, R]
    mask: torch.Tensor  # [N, R] float32
    old_logp: torch.Tensor  # [N, R] the rollout policy's log-probs
    advantages: torch.Tensor | None  # [N], or [N, R] per token
    group_ids: torch.Tensor  # [N]
    rewards: torch.Tensor | None = None  # [N] after the algorithm's shaping
    correct: torch.Tensor | None = None  # [N] bool
    old_values: torch.Tensor | None = None  # [N, R] the critic's values at rollout (algorithms with a critic)
    returns: torch.Tensor | None = None  # [N, R] the critic's targets

    @property
    def num_rows(self) -> int:
        return len(self.mask)

    def rows(self, index: torch.Tensor) -> Rollout:
        """A sub-batch, trimmed to its own longest prompt and response."""
        prompt_mask, mask = self.prompt_mask[index], self.mask[index]
        p0 = int((prompt_mask.sum(0) > 0).nonzero().min()) if prompt_mask.numel() else 0
        r1 = int(mask.sum(1).max()) if mask.numel() else 0

        def per_row(t: torch.Tensor | None) -> torch.Tensor | None:  # [N] or [N, R], trimmed to r1
            if t is None:
                return None
            return t[index, :r1] if t.dim() == 2 else t[index]

        return Rollout(self.prompt_ids[index, p0:], prompt_mask[:, p0:], self.response_ids[index, :r1],
                       mask[:, :r1], per_row(self.old_logp), per_row(self.advantages), self.group_ids[index],
                       per_row(self.rewards), per_row(self.correct), per_row(self.old_values),
                       per_row(self.returns))


def _stack_right(rows: Sequence[torch.Tensor], fill: float) -> torch.Tensor:
    width = max(r.shape[1] for r in rows)
    return torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[1]), value=fill) for r in rows])


def _stack_left(rows: Sequence[torch.Tensor], fill: float) -> torch.Tensor:
    width = max(r.shape[1] for r in rows)
    return torch.cat([torch.nn.functional.pad(r, (width - r.shape[1], 0), value=fill) for r in rows])


# -- the trainer --------------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config field 'device': {name!r} requested but CUDA is not available")
    return device


def resolve_autocast(dtype: str, device: torch.device) -> torch.dtype | None:
    if dtype == "bfloat16" or (dtype == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


NO_UPDATE: dict[str, Any] = {"loss": None, "grad_norm": None, "updates": 0}


class LocalTrainer:
    """One algorithm x seed: the policy, its optimizer and schedule, rollouts, updates, evaluation."""

    def __init__(self, cfg, alg, seed: int, base_checkpoint: str | Path, task: TaskData, *,
                 resume_from: Path | None = None):
        self.cfg, self.alg, self.seed, self.task = cfg, alg, seed, task
        self.device = resolve_device(cfg.device)
        self.autocast_dtype = resolve_autocast(cfg.dtype, self.device)
        self.tokenizer = models.load_tokenizer(str(base_checkpoint))
        source = resume_from if resume_from is not None else Path(base_checkpoint)
        self.model = models.load_model(str(source)).to(self.device)
        self.model.train()  # no dropout in the supported models; train mode only affects such layers
        self.eos_ids = models.stop_token_ids(self.tokenizer, self.model.generation_config)
        self.pad_id = self.tokenizer.pad_token_id
        self.reference = None
        if alg.needs_reference:
            self.reference = models.load_model(str(base_checkpoint))
            self.reference.to(self.device).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = cfg.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda k: min(1.0, (k + 1) / warmup) if warmup > 0 else 1.0)
        # Procedural tasks whose difficulty rises during the run (fipo_bench.evals.procedural.Curriculum).
        self.curriculum = task.curriculum() if task.curriculum is not None else None
        if resume_from is not None:
            state = torch.load(resume_from / TRAINER_STATE, map_location=self.device, weights_only=True)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.curriculum is not None:
                self.curriculum.load_state_dict(state["curriculum"])
        self.critic, self.critic_optimizer = None, None
        if alg.needs_critic:
            # Its own AdamW at lr x critic_lr_scale, constant: value pretraining runs before any warm-up.
            self.critic = ValueModel(base_checkpoint, seed_for("value-head", seed)).to(self.device).train()
            self.critic_optimizer = torch.optim.AdamW(
                self.critic.parameters(), lr=cfg.lr * alg.critic_lr_scale, weight_decay=cfg.weight_decay)
            if resume_from is not None:
                self.critic.load(resume_from / CRITIC_DIR, self.critic_optimizer, self.device)
        self.order = PromptOrder(len(task.train), cfg.rollout_batch_size, cfg.max_gen_batches, seed)
        self._prompt_cache: dict[str, list[int]] = {}

    # -- helpers --------------------------------------------------------------------------------------

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def encode_prompt(self, problem_text: str) -> list[int]:
        ids = self._prompt_cache.get(problem_text)
        if ids is None:
            ids = models.encode_prompt(self.tokenizer, self.task.prompt_text(problem_text))
            if len(self._prompt_cache) < 200_000:
                self._prompt_cache[problem_text] = ids
        return ids

    def generate(self, prompts: list[list[int]], *, max_new_tokens: int, temperature: float, top_p: float,
                 generator: torch.Generator, chunk: int) -> tuple[list[Samples], list[str]]:
        """Sample one response per prompt, in chunks of `chunk` rows; also decode them."""
        self.model.eval()
        parts, texts = [], []
        for start in range(0, len(prompts), chunk):
            s = sample(self.model, prompts[start:start + chunk], max_new_tokens=max_new_tokens,
                       eos_token_id=self.eos_ids, pad_token_id=self.pad_id, temperature=temperature,
                       top_p=top_p, generator=generator, autocast_dtype=self.autocast_dtype)
            ends = s.lengths - s.finished.long()  # drop the EOS token from the text
            rows = s.tokens.tolist()
            texts += self.tokenizer.batch_decode([r[:e] for r, e in zip(rows, ends.tolist(), strict=True)],
                                                 skip_special_tokens=True)
            parts.append(s)
        self.model.train()
        return parts, texts

    def _generator(self, *parts: Any) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed_for(*parts))

    # -- one training step ----------------------------------------------------------------------------

    def train_step(self, step: int) -> dict[str, Any]:
        """Sample, filter, score, estimate advantages, update; returns the metrics line (without timing of
        the caller's I/O).

        1. sample: B prompts x G samples of the current policy (fipo_bench.sampling, KV cache), checked
           against the gold answers. The prompts and the sampler's generator depend only on (seed, step,
           generation batch), so every algorithm with the same seed sees the same prompts and the same
           first rollout;
        2. filter: groups failing `alg.keep_group` on correctness are dropped (dynamic sampling), and more
           batches are generated until B groups are kept (at most `max_gen_batches`; then it trains on
           those);
        3. score: +1 correct, -1 otherwise (DAPO's rule reward; a response cut at the length limit is not
           correct), then `alg.shape_rewards` (overlong shaping);
        4. advantage: `alg.advantages` (with the response mask); for an algorithm with a critic
           (`alg.needs_critic`, fipo_bench.backends.local.critic), the critic's values of the rollout and
           `alg.critic_rollout`;
        5. update: B / mini_batch_size AdamW steps of `alg.policy_loss`, one per mini-batch of groups (so
           off-policy weights like FIPO's act from the second on), with grad clipping; a frozen reference
           model is loaded only when `alg.needs_reference`; a critic takes one `alg.value_loss` step per
           mini-batch beside the policy (and `alg.value_pretrain_steps` critic-only steps before step 1
           of a fresh run, `pretrain_critic`). The learning-rate schedule (linear warm-up, then
           constant) advances once per step, as in verl.
        """
        t0 = time.perf_counter()
        self._critic_time = 0.0
        batches, kept = self.sample_and_filter(step)
        gen_time = time.perf_counter() - t0
        metrics = self.rollout_metrics(step, batches, kept)
        lr = self.optimizer.param_groups[0]["lr"]
        update = NO_UPDATE
        if kept:
            # Losses that draw from torch's global generator, as their reference code does (Clip-Cov's
            # token selection), draw from (seed, step) here: a run is reproducible and resumable.
            torch.manual_seed(seed_for("update", self.seed, step))
            rollout = self.score(kept[:self.cfg.rollout_batch_size])
            update = {**self.estimate_advantages(rollout), **self.update(rollout)}
        self.scheduler.step()
        step_time = time.perf_counter() - t0
        generated_tokens = sum(int(b.samples.lengths.sum()) for b in batches)
        metrics.update(update)
        metrics.update({
            "lr": lr,
            "tokens_per_s": generated_tokens / step_time,
            "gen_tokens_per_s": generated_tokens / gen_time,
            "gen_time_s": gen_time,
            "step_time_s": step_time,
        })
        if self.critic is not None:
            metrics.update({"critic_lr": self.critic_optimizer.param_groups[0]["lr"],
                            "critic_time_s": self._critic_time})
        if self.curriculum is not None:
            metrics.update(self.curriculum.end_step(metrics["accuracy"]))
        return metrics

    def sample_and_filter(self, step: int) -> tuple[list[GenerationBatch], list[Group]]:
        """Generation batches of step `step` and the groups that pass `alg.keep_group`: one batch, or with
        `alg.dynamic_sampling` more until rollout_batch_size groups pass (at most max_gen_batches)."""
        batches: list[GenerationBatch] = []
        kept: list[Group] = []
        for g in range(self.cfg.max_gen_batches if self.alg.dynamic_sampling else 1):
            generator = self._generator("rollout", self.seed, step, g)
            batches.append(self.sample(self.order.indices(step, g), generator))
            kept += self.filter_groups(batches[-1])
            if len(kept) >= self.cfg.rollout_batch_size:
                break
        return batches, kept

    def sample(self, problem_indices: list[int], generator: torch.Generator) -> GenerationBatch:
        """G samples of the current policy per training problem, checked against the gold answers."""
        n = self.cfg.samples_per_prompt
        problems = (self.curriculum.problems(problem_indices) if self.curriculum is not None
                    else [self.task.train[i] for i in problem_indices])
        prompts = [self.encode_prompt(p.problem) for p in problems for _ in range(n)]
        (s,), texts = self.generate(prompts, max_new_tokens=self.cfg.max_response_length,
                                    temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                                    generator=generator, chunk=len(prompts))
        verdicts = self.task.check(texts, [p.answer for p in problems for _ in range(n)])
        correct = torch.tensor([v.correct for v in verdicts], dtype=torch.bool) & s.finished.cpu()
        prompt_ids, prompt_mask = left_pad(prompts, self.pad_id, self.device)
        groups = []
        for j in range(len(problems)):
            rows = slice(j * n, (j + 1) * n)
            groups.append(Group(prompt_ids[rows], prompt_mask[rows], s.tokens[rows], s.mask[rows],
                                s.logp[rows], correct[rows], s.lengths[rows]))
        return GenerationBatch(s, correct, groups)

    def filter_groups(self, batch: GenerationBatch) -> list[Group]:
        return [group for group in batch.groups if self.alg.keep_group(group.correct.float())]

    def rollout_metrics(self, step: int, batches: list[GenerationBatch], kept: list[Group]) -> dict[str, Any]:
        """Rollout metrics of generation batch 0 (the same prompts for every algorithm at this step), and
        how the filter went."""
        s, correct = batches[0].samples, batches[0].correct
        lengths = s.lengths.float().cpu()
        rewards = self.alg.shape_rewards(torch.where(correct, REWARD_CORRECT, REWARD_INCORRECT), lengths,
                                         self.cfg.max_response_length)
        return {
            "step": step,
            "accuracy": float(correct.float().mean()),
            "reward": float(rewards.mean()),
            "response_length_mean": float(lengths.mean()),
            "response_length_median": float(statistics.median(lengths.tolist())),
            "truncated_frac": float((~s.finished).float().mean()),
            "entropy": float((s.entropy * s.mask).sum() / s.mask.sum().clamp(min=1)),
            "kept_groups_frac": len(kept) / sum(len(b.groups) for b in batches),  # share passing keep_group
            "gen_batches": len(batches),
        }

    def score(self, groups: list[Group]) -> Rollout:
        """The groups as one batch of rows, with their rewards: +1 correct, -1 otherwise, as DAPO's rule
        reward, then `alg.shape_rewards` (overlong shaping)."""
        correct = torch.cat([g.correct for g in groups])
        lengths = torch.cat([g.lengths for g in groups]).float().cpu()
        raw = torch.where(correct, REWARD_CORRECT, REWARD_INCORRECT)
        rewards = self.alg.shape_rewards(raw, lengths, self.cfg.max_response_length)
        return Rollout(
            prompt_ids=_stack_left([g.prompt_ids for g in groups], self.pad_id),
            prompt_mask=_stack_left([g.prompt_mask for g in groups], 0),
            response_ids=_stack_right([g.response_ids for g in groups], self.pad_id),
            mask=_stack_right([g.mask for g in groups], 0.0),
            old_logp=_stack_right([g.logp for g in groups], 0.0),
            advantages=None,
            group_ids=torch.arange(len(groups)).repeat_interleave(self.cfg.samples_per_prompt),
            rewards=rewards, correct=correct,
        )

    def estimate_advantages(self, rollout: Rollout) -> dict[str, float]:
        """rollout.advantages from `alg.advantages` (with the response mask), or with a critic from
        `alg.critic_rollout` on the critic's values (also rollout.old_values and returns); returns the
        critic's rollout metrics, if any."""
        rewards = rollout.rewards
        if self.critic is None:
            rollout.advantages = self.alg.advantages(rewards, rollout.group_ids,
                                                     mask=rollout.mask.to(rewards.device)).to(self.device)
        metrics: dict[str, float] = {}
        rollout.group_ids, rollout.rewards = rollout.group_ids.to(self.device), rewards.to(self.device)
        rollout.correct = rollout.correct.to(self.device)
        if self.critic is not None:
            start = time.perf_counter()
            rollout.old_values = self._forward_no_grad(rollout, self._values_of(self.critic))
            rollout.advantages, rollout.returns, metrics = self.alg.critic_rollout(
                rollout.rewards, rollout.old_values, rollout.mask)
            self._critic_time += time.perf_counter() - start
        return metrics

    # -- the update -----------------------------------------------------------------------------------

    def update(self, rollout: Rollout) -> dict[str, Any]:
        """B / mini_batch_size AdamW steps of `alg.policy_loss`, one per mini-batch of groups in order (so
        off-policy weights like FIPO's act from the second on), with grad clipping, each followed by a critic
        step on the same rows when there is a critic; returns the mean loss and grad norm and the
        algorithm's own metrics (StepMetrics)."""
        rows_per_update = self.cfg.mini_batch_size * self.cfg.samples_per_prompt
        rows = torch.arange(rollout.num_rows, device=self.device)
        mini_batches = rows.split(rows_per_update)
        if self.cfg.recompute_old_logp:
            self.recompute_old_logp(rollout, later_rows=rows[rows_per_update:])
        step_metrics = StepMetrics()
        losses, norms, critic_norms = [], [], []
        for k, mini in enumerate(mini_batches):
            self.optimizer.zero_grad(set_to_none=True)
            on_policy = k == 0 and self.cfg.recompute_old_logp
            loss = self.backward_mini_batch(rollout, mini, step_metrics, old_logp_is_logp=on_policy)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            if not torch.isfinite(norm):
                raise NonFiniteLossError(f"non-finite gradient norm {float(norm)} (update {k + 1})")
            self.optimizer.step()
            losses.append(loss)
            norms.append(float(norm))
            if self.critic is not None:
                critic_norms.append(self.critic_update(rollout, mini, step_metrics))
        out: dict[str, Any] = step_metrics.reduced()
        out.update({"loss": sum(losses) / len(losses), "grad_norm": sum(norms) / len(norms),
                    "updates": len(losses)})
        if critic_norms:
            out["critic_grad_norm"] = sum(critic_norms) / len(critic_norms)
        return out

    def recompute_old_logp(self, rollout: Rollout, later_rows: torch.Tensor) -> None:
        """old_logp := the current policy's log-probs, before this step's first update (`recompute_old_logp`:
        the training forward's numerics, not the sampler's).

        Computed here for the later updates' rows only: the first update sees the policy this pass would
        see, so it takes them from its own forward, detached (`backward_mini_batch(old_logp_is_logp=True)`:
        the ratio is exactly 1, as TRL and verl do when an update is on-policy). That saves one forward
        pass over a mini-batch per step.
        """
        rollout.old_logp = self._forward_logp(self.model, rollout, later_rows)

    def backward_mini_batch(self, rollout: Rollout, mini: torch.Tensor,
                            step_metrics: StepMetrics | None = None, *,
                            old_logp_is_logp: bool = False) -> float:
        """Accumulate the gradient of `alg.policy_loss` over the rows `mini`, micro-batch by micro-batch.

        Rows are sorted by length first, so each forward pass pads little. Within a micro-batch the
        forward runs in LENGTH_BUCKETS length-homogeneous passes whose log-probs are put back together
        before one `policy_loss` call, so the loss is exactly the unbucketed one. Returns the mini-batch
        loss; the algorithm's metrics of each micro-batch go to `step_metrics`. Micro-batch losses are
        weighted by their share of what the aggregation averages over (tokens for token-mean, sequences
        otherwise): exact for the built-in aggregations, approximate under sequence drops (FIPO) as in
        verl; with micro_batch_size 0 there is one micro-batch and nothing is approximated.
        `old_logp_is_logp`: the policy has not moved since the rollout (see `recompute_old_logp`).
        """
        mini_tokens = rollout.mask[mini].sum().clamp(min=1)
        loss_total = 0.0
        for micro in self._length_sorted_micro_batches(rollout, mini):
            part = rollout.rows(micro)
            with self._autocast():
                logp = self._bucketed(part, self._logp_of(self.model))
                ref_logp = None
                if self.reference is not None:
                    with torch.no_grad():
                        ref_logp = self._bucketed(part, self._logp_of(self.reference))
            old_logp = logp.detach() if old_logp_is_logp else part.old_logp
            extra = {"correct": part.correct} if self.alg.needs_correctness else {}
            loss, loss_metrics = self.alg.policy_loss(logp, old_logp, part.advantages, part.mask, ref_logp,
                                                      **extra)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite loss {float(loss.detach())}")
            weight = self._micro_weight(self.alg.loss_agg, part, micro, mini, mini_tokens)
            (loss * weight).backward()
            loss_total += float(loss.detach()) * weight
            if step_metrics is not None:
                step_metrics.add(loss_metrics, float(part.mask.sum()))
        return loss_total

    # -- the critic -----------------------------------------------------------------------------------

    def critic_update(self, rollout: Rollout, mini: torch.Tensor, step_metrics: StepMetrics) -> float:
        """One AdamW step of the critic on `alg.value_loss` over the rows `mini` (micro-batches and buckets
        as the policy's, micro-batch losses weighted by their share of what `value_loss_agg` averages over),
        with grad clipping; returns the gradient norm."""
        start = time.perf_counter()
        self.critic_optimizer.zero_grad(set_to_none=True)
        mini_tokens = rollout.mask[mini].sum().clamp(min=1)
        for micro in self._length_sorted_micro_batches(rollout, mini):
            part = rollout.rows(micro)
            with self._autocast():
                values = self._bucketed(part, self._values_of(self.critic))
            loss, metrics = self.alg.value_loss(values, part.old_values, part.returns, part.mask)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"non-finite value loss {float(loss.detach())}")
            (loss * self._micro_weight(self.alg.value_loss_agg, part, micro, mini, mini_tokens)).backward()
            step_metrics.add(metrics, float(part.mask.sum()))
        norm = torch.nn.utils.clip_grad_norm_(self.critic.parameters(), self.cfg.grad_clip)
        if not torch.isfinite(norm):
            raise NonFiniteLossError(f"non-finite critic gradient norm {float(norm)}")
        self.critic_optimizer.step()
        self._critic_time += time.perf_counter() - start
        return float(norm)

    def pretrain_critic(self) -> list[dict[str, Any]]:
        """`alg.value_pretrain_steps` critic-only steps on rollouts of the initial policy (VC-PPO's value
        pretraining), before step 1 of a fresh run; returns one metrics row per step. Prompts and samples
        come from their own streams, derived from (seed, "value-pretrain"), so the policy's steps see the
        data they see without pretraining."""
        steps = self.alg.value_pretrain_steps if self.critic is not None else 0
        order = PromptOrder(len(self.task.train), self.cfg.rollout_batch_size, 1,
                            seed_for("value-pretrain", self.seed))
        rows_per_update = self.cfg.mini_batch_size * self.cfg.samples_per_prompt
        log = []
        for k in range(1, steps + 1):
            t0 = time.perf_counter()
            self._critic_time = 0.0
            batch = self.sample(order.indices(k, 0), self._generator("value-pretrain", self.seed, k))
            rollout = self.score(batch.groups)
            metrics: dict[str, Any] = {"step": k, **self.estimate_advantages(rollout)}
            step_metrics, norms = StepMetrics(), []
            for mini in torch.arange(rollout.num_rows, device=self.device).split(rows_per_update):
                norms.append(self.critic_update(rollout, mini, step_metrics))
            metrics.update(step_metrics.reduced())
            metrics.update({"critic_grad_norm": sum(norms) / len(norms),
                            "critic_lr": self.critic_optimizer.param_groups[0]["lr"],
                            "step_time_s": time.perf_counter() - t0})
            log.append(metrics)
        return log

    def _values_of(self, critic: ValueModel) -> Callable[[Rollout], torch.Tensor]:
        return lambda part: response_values(critic, part.prompt_ids, part.prompt_mask, part.response_ids,
                                            part.mask)

    @staticmethod
    def _micro_weight(loss_agg: str, part: Rollout, micro: torch.Tensor, mini: torch.Tensor,
                      mini_tokens: torch.Tensor) -> float:
        """A micro-batch's share of what its mini-batch's loss averages over: tokens for token-mean,
        sequences otherwise."""
        if loss_agg == "token-mean":
            return float(part.mask.sum() / mini_tokens)
        return len(micro) / len(mini)

    # -- batched forward passes -----------------------------------------------------------------------

    def _micro_batches(self, rows: torch.Tensor) -> list[torch.Tensor]:
        size = self.cfg.micro_batch_size or max(1, len(rows))
        return [rows[i:i + size] for i in range(0, len(rows), size)]

    def _length_sorted_micro_batches(self, rollout: Rollout, rows: torch.Tensor) -> list[torch.Tensor]:
        """`rows` sorted by prompt + response length, in micro-batches: each forward pass then pads little."""
        lengths = rollout.mask[rows].sum(1) + rollout.prompt_mask[rows].sum(1)
        return self._micro_batches(rows[torch.sort(lengths, stable=True).indices])

    def _logp_of(self, model) -> Callable[[Rollout], torch.Tensor]:
        temperature = self.cfg.temperature
        return lambda part: response_logp(model, part.prompt_ids, part.prompt_mask, part.response_ids,
                                          part.mask, temperature)

    def _bucketed(self, part: Rollout, per_token: Callable[[Rollout], torch.Tensor]) -> torch.Tensor:
        """`per_token` of `part` (rows sorted by length) in up to LENGTH_BUCKETS passes. [n, R]"""
        n, width = part.response_ids.shape
        size = max(MIN_BUCKET_ROWS, -(-n // LENGTH_BUCKETS))
        pieces = []
        for start in range(0, n, size):
            bucket = part.rows(torch.arange(start, min(n, start + size), device=part.mask.device))
            values = per_token(bucket)
            pieces.append(torch.nn.functional.pad(values, (0, width - values.shape[1])))
        return torch.cat(pieces)

    @torch.no_grad()
    def _forward_no_grad(self, rollout: Rollout, per_token: Callable[[Rollout], torch.Tensor],
                         rows: torch.Tensor | None = None) -> torch.Tensor:
        """`per_token` of `rows` (default all) without gradient, through the training pass's own path
        (length sort, micro-batches, buckets): the same numerics, and padding only within a bucket.
        [N, R] float32, 0 on the other rows."""
        out = torch.zeros_like(rollout.mask)
        if rows is None:
            rows = torch.arange(rollout.num_rows, device=self.device)
        for micro in self._length_sorted_micro_batches(rollout, rows):
            part = rollout.rows(micro)
            with self._autocast():
                values = self._bucketed(part, per_token)
            out[micro, :values.shape[1]] = values.float()
        return out

    def _forward_logp(self, model, rollout: Rollout, rows: torch.Tensor | None = None) -> torch.Tensor:
        """response_logp of `rows` (default all) under `model`, without gradient (see _forward_no_grad)."""
        return self._forward_no_grad(rollout, self._logp_of(model), rows)

    # -- evaluation -----------------------------------------------------------------------------------

    def evaluate(self, problems: list, *, k: int, temperature: float, top_p: float, max_new_tokens: int,
                 seed_parts: tuple) -> list[dict]:
        """Generations of `k` samples per problem, as rows of the eval generations.jsonl schema."""
        prompts = [self.encode_prompt(p.problem) for p in problems for _ in range(k)]
        chunk = max(64, self.cfg.rollout_batch_size * self.cfg.samples_per_prompt)
        parts, texts = self.generate(prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                                     top_p=top_p, generator=self._generator("eval", *seed_parts), chunk=chunk)
        lengths = torch.cat([s.lengths.cpu() for s in parts]).tolist()
        finished = torch.cat([s.finished.cpu() for s in parts]).tolist()
        golds = [p.answer for p in problems for _ in range(k)]
        verdicts = self.task.check(texts, golds)
        rows = []
        for i, (text, verdict) in enumerate(zip(texts, verdicts, strict=True)):
            problem = problems[i // k]
            rows.append({
                "problem_id": problem.id, "sample_index": i % k, "response": text, "gold": problem.answer,
                "extracted": verdict.extracted, "verdict": verdict.verdict,
                "correct": bool(verdict.correct and finished[i]), "num_tokens": int(lengths[i]),
                "truncated": not finished[i],
                **({"score": verdict.score} if verdict.score is not None else {}),
            })
        return rows

    # -- checkpoints ----------------------------------------------------------------------------------

    def save_checkpoint(self, directory: Path, step: int) -> None:
        """HF model + tokenizer + optimizer/scheduler state (+ the critic and its optimizer state in
        critic/), written to a temporary dir then renamed."""
        directory = Path(directory)
        tmp = directory.parent / f".{directory.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(str(tmp))
        self.tokenizer.save_pretrained(str(tmp))
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                    "step": step,
                    **({"curriculum": self.curriculum.state_dict()} if self.curriculum is not None else {})},
                   tmp / TRAINER_STATE)
        if self.critic is not None:
            self.critic.save(tmp / CRITIC_DIR, self.critic_optimizer)
        shutil.rmtree(directory, ignore_errors=True)
        tmp.rename(directory)

