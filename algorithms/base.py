"""The algorithm contract every trainer backend relies on.

An algorithm is a frozen dataclass of hyperparameters (defaults = its published recipe; every field made
with `hyperparameter(default, doc)` so `fipo-bench algos` can show its meaning and source, or with
`setting(default, source)` where a subclass only changes an inherited field's default) plus the
methods below. Backends call only these methods, in this vocabulary:

    rewards[N], group_ids[N]          one scalar reward per sampled response, and its prompt's group
    logp, old_logp, ref_logp [N, T]   per-token log-probabilities of the response tokens under the
                                      policy being trained, the rollout policy, the reference model
    advantages [N] or [N, T]          sequence-level (broadcast over tokens) or per-token advantages
    mask [N, T]                       1 on response tokens, 0 on padding

Backends call `advantages(rewards, group_ids, mask=mask)` with the rollout's response mask, for the
estimators that need response lengths or give per-token advantages (REINFORCE++, OPO).
Math runs in float32 for bf16/fp16/fp32 inputs and in float64 for float64 inputs (`ops.compute_dtype`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar

import torch
from torch import Tensor

from fipo_bench import ops


def hyperparameter(default: Any, doc: str) -> Any:
    """A dataclass field with its documentation: what it means and where its default comes from.

    `doc` is "Meaning. Source.", split at the first ". ".
    """
    meaning, dot, source = doc.partition(". ")
    meaning += "." if dot else ""
    return dataclasses.field(default=default, metadata={"meaning": meaning, "source": source})


def setting(default: Any, source: str) -> Any:
    """An inherited hyperparameter with this class's own default, and `source`: where that value is
    published. Its meaning is the one the nearest base class declared (filled in when the subclass is
    created, see Algorithm.__init_subclass__), so it is written once."""
    return dataclasses.field(default=default, metadata={"source": source})


def _declared_meaning(cls: type, name: str) -> str:
    """The meaning of hyperparameter `name` as the nearest dataclass base of `cls` declares it."""
    for base in cls.__mro__[1:]:
        declared = base.__dict__.get("__dataclass_fields__", {}).get(name)
        if declared is not None and "meaning" in declared.metadata:
            return declared.metadata["meaning"]
    raise TypeError(f"{cls.__qualname__}.{name}: setting() changes the default of an inherited "
                    f"hyperparameter, but no base class declares {name!r}; declare it with "
                    f"hyperparameter(default, doc)")


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """Base class: subclasses implement `advantages` and `token_loss`, and override the rest as needed."""

    name: ClassVar[str] = ""  # set by registry.register_algorithm
    paper: ClassVar[str] = ""  # the publication, e.g. "Shao et al. 2024, arXiv 2402.03300" (fipo-bench algos)
    # Old name -> new name of a renamed hyperparameter: the registry still accepts the old name, with a
    # FutureWarning, for one release after the rename.
    renamed_hyperparameters: ClassVar[dict[str, str]] = {}
    # Whether the algorithm learns a value model (a critic): then backends call `critic_rollout`
    # with the critic's per-token values and train it with `value_loss` (algorithms/ppo.py).
    needs_critic: ClassVar[bool] = False

    loss_agg: str = hyperparameter(
        "token-mean", "How per-token losses are reduced: token-mean, seq-mean-token-mean, seq-mean-token-sum "
        "or seq-mean-token-sum-norm (see fipo_bench.ops.aggregate).")
    dynamic_sampling: bool = hyperparameter(
        False, "Drop groups whose samples are all correct or all wrong, and generate more until the batch "
        "is full. DAPO (Yu et al. 2025, arXiv 2503.14476) section 3.2.")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give each `setting(...)` field of the new class the meaning its base class declared (runs
        before the dataclass decorator reads the fields)."""
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            made_by_setting = isinstance(value, dataclasses.Field) and "source" in value.metadata
            if made_by_setting and "meaning" not in value.metadata:
                metadata = {"meaning": _declared_meaning(cls, name), **value.metadata}
                value.metadata = types.MappingProxyType(metadata)

    def __post_init__(self) -> None:
        if self.loss_agg not in ops.AGGREGATION_MODES:
            raise ValueError(f"{type(self).__name__}.loss_agg: expected one of "
                             f"{', '.join(ops.AGGREGATION_MODES)}, got {self.loss_agg!r}")
        for key, hint in typing.get_type_hints(type(self)).items():
            choices = typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else ()
            if choices and getattr(self, key) not in choices:
                raise ValueError(f"{type(self).__name__}.{key}: expected one of "
                                 f"{', '.join(map(repr, choices))}, got {getattr(self, key)!r}")

    def hyperparameters(self) -> dict[str, Any]:
        """Every hyperparameter -> its value (JSON-serialisable)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def needs_reference(self) -> bool:
        """Whether `token_loss` needs `ref_logp` (a KL term against a reference model)."""
        return False

    @property
    def needs_correctness(self) -> bool:
        """Whether `policy_loss` needs `correct` (each response's 0/1 correctness; VAPO's LM loss)."""
        return False

    @property
    def num_tokens_norm(self) -> float | None:
        """The constant divisor of loss_agg "seq-mean-token-sum-norm" (None = the padded width T)."""
        return None

    def advantages(self, rewards: Tensor, group_ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """Advantages: rewards[N], group_ids[N], the response mask[N, T] -> [N] (sequence-level) or [N, T]."""
        raise NotImplementedError

    def shape_rewards(self, rewards: Tensor, response_lengths: Tensor, max_response_length: int) -> Tensor:
        """Rewards after length shaping: rewards[N], response_lengths[N] (tokens) -> [N]. Default: as is."""
        return rewards

    def keep_group(self, group_scores: Tensor) -> bool:
        """Whether a prompt's group of samples enters the batch. group_scores[G]: correctness (0/1) of each.

        With dynamic sampling, a group whose samples are all right or all wrong has zero advantage
        everywhere and is dropped.
        """
        if not self.dynamic_sampling:
            return True
        scores = torch.as_tensor(group_scores)
        return bool(scores.numel() > 0 and (scores != scores.flatten()[0]).any())

    def token_loss(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, ref_logp: Tensor | None = None
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Per-token loss before aggregation.

        Returns (token_loss[N, T] in the compute dtype, 0 outside loss_mask; loss_mask[N, T] float32 = mask
        minus the tokens the algorithm drops; metrics: name -> 0-dim tensor). Backends with their own token
        normalisation (OpenRLHF) reduce these themselves; everyone else calls `policy_loss`.
        """
        raise NotImplementedError

    def policy_loss(
        self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor,
        ref_logp: Tensor | None = None, correct: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """The 0-dim loss to minimise (aggregated with `loss_agg`) and its metrics as floats.

        correct[N]: each response's correctness (0/1), used only where `needs_correctness`.
        """
        token_loss, loss_mask, metrics = self.token_loss(logp, old_logp, advantages, mask, ref_logp)
        loss = ops.aggregate(token_loss, loss_mask, self.loss_agg, self.num_tokens_norm)
        extra = self.auxiliary_loss(logp, mask, correct)
        if extra is not None:
            term, extra_metrics = extra
            loss = loss + term
            metrics.update(extra_metrics)
        return loss, metric_floats(metrics)

    def auxiliary_loss(
        self, logp: Tensor, mask: Tensor, correct: Tensor | None
    ) -> tuple[Tensor, dict[str, Tensor]] | None:
        """A weighted 0-dim term added to the aggregated policy loss, a mean over this batch's own tokens
        (VAPO's LM loss), and its metrics; None (the default) for none. Backends that reduce `token_loss`
        themselves (OpenRLHF) add it with the micro-batch's share of the batch's tokens."""
        return None


def metric_floats(metrics: dict[str, Tensor]) -> dict[str, float]:
    """0-dim metric tensors -> floats, in one device sync."""
    if not metrics:
        return {}
    values = torch.stack(list(metrics.values())).detach().float().tolist()
    return dict(zip(metrics, values, strict=True))


def as_token_inputs(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, ref_logp: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Validate shapes and return logp, old_logp, advantages[N, T], bool mask[N, T], ref_logp in the compute
    dtype (float32, or float64 when an input is float64).

    Values outside the mask are replaced by 0 so padding garbage (inf/NaN) can reach neither the
    loss nor its gradient.
    """
    if logp.dim() != 2:
        raise ValueError(f"logp must be [N, T], got shape {tuple(logp.shape)}")
    named = {"old_logp": old_logp, "mask": mask, "ref_logp": ref_logp}
    for key, tensor in named.items():
        if tensor is not None and tensor.shape != logp.shape:
            raise ValueError(f"{key} must have logp's shape {tuple(logp.shape)}, got {tuple(tensor.shape)}")
    if advantages.shape not in (logp.shape[:1], logp.shape):
        raise ValueError(f"advantages must be [N] or [N, T] with [N, T] = {tuple(logp.shape)}, "
                         f"got {tuple(advantages.shape)}")
    keep = mask.bool()
    dtype = ops.compute_dtype(logp, old_logp, advantages, ref_logp)
    zero = torch.zeros((), dtype=dtype, device=logp.device)

    def clean(tensor: Tensor) -> Tensor:
        return torch.where(keep, tensor.to(dtype), zero)

    if advantages.dim() == 1:
        advantages = advantages[:, None].expand(logp.shape)
    ref = None if ref_logp is None else clean(ref_logp)
    return clean(logp), clean(old_logp), clean(advantages), keep, ref


def required_mask(mask: Tensor | None, algorithm: str) -> Tensor:
    """The response mask [N, T] an estimator needs (lengths, per-token advantages); a clear error when a
    caller did not pass it."""
    if mask is None:
        raise ValueError(f"{algorithm}.advantages needs the response mask: call advantages(rewards, "
                         f"group_ids, mask=mask)")
    return mask
