"""Batched autoregressive sampling with a KV cache that also returns the policy's log-probs.

The one sampler of the project: the local trainer's rollouts and the transformers path of
`fipo-bench eval` both call `sample`, so both see the same log-probs the trainer recomputes.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class Samples:
    """Responses of one `sample` call; row i answers prompt i. R = longest response in the batch."""

    tokens: torch.Tensor  # [B, R] long, pad_token_id after the end of each response
    logp: torch.Tensor  # [B, R] float32 log pi(token | prefix) at the sampling temperature; 0 on padding
    entropy: torch.Tensor  # [B, R] float32 entropy of that distribution; 0 on padding
    mask: torch.Tensor  # [B, R] float32, 1 on response tokens (the EOS token included)
    lengths: torch.Tensor  # [B] long, response tokens including EOS
    finished: torch.Tensor  # [B] bool, the response ended with EOS (else it was truncated)


def left_pad(prompts: list[list[int]], pad_token_id: int, device: torch.device | str = "cpu"):
    """Token lists -> (input_ids [B, P], attention_mask [B, P]) padded on the left."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {i} is empty")
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def scoring_inputs(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, response_ids: torch.Tensor,
                   response_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The model inputs that score [N, P] left-padded prompts + [N, R] responses in one forward pass:
    input_ids and attention_mask [N, P+R], and position_ids counted from each row's first real token (as
    during generation). The output at position P-1+t is the one that predicts response token t."""
    attention = torch.cat([prompt_mask, response_mask.long()], dim=1)
    return {"input_ids": torch.cat([prompt_ids, response_ids], dim=1), "attention_mask": attention,
            "position_ids": (attention.cumsum(-1) - 1).clamp(min=0)}


def nucleus_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Set logits outside the smallest set of tokens with probability mass >= top_p to -inf. [B, V]"""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # mass of strictly more likely tokens
    drop_sorted = mass_before >= top_p  # the most likely token always stays (mass_before = 0)
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def _cache_keyword(model) -> str:
    """transformers >= 5.2x names the cache argument `cache`; earlier versions `past_key_values`."""
    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


@torch.inference_mode()
def sample(
    model,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    eos_token_id: int | Sequence[int],
    pad_token_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> Samples:
    """Sample one response per prompt. temperature 0 = greedy (log-probs then at temperature 1).

    `eos_token_id`: one id or several (a model's generation config may list more than its tokenizer).
    `generator`: one for the whole batch, or one per prompt, so that each row's sample depends only on
    its own generator and not on which other prompts share the batch (evaluation seeds per sample).

    One prefill over the left-padded prompts, then one single-token forward per step for the whole batch
    (no per-sequence loops). Rows that emitted EOS are dropped from the batch and the KV cache once they
    are an eighth of it, so the cost follows the tokens actually generated rather than batch x longest
    response; the loop stops when every row is done. The log-prob returned for each sampled token is
    under the policy at the sampling temperature *before* top-p truncation, which is what the trainer's
    forward pass recomputes (the PPO ratio compares the same distribution); entropy likewise.
    """
    device = next(model.parameters()).device
    per_row_generators = isinstance(generator, Sequence)
    if per_row_generators and len(generator) != len(prompts):
        raise ValueError(f"got {len(generator)} generators for {len(prompts)} prompts")
    eos_ids = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else sorted(set(eos_token_id)),
                           dtype=torch.long, device=device)
    input_ids, prompt_mask = left_pad(prompts, pad_token_id, device)
    batch, prompt_len = input_ids.shape
    attention = torch.zeros((batch, prompt_len + max_new_tokens), dtype=torch.long, device=device)
    attention[:, :prompt_len] = prompt_mask
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)  # [B, P]
    next_position = positions[:, -1:] + 1  # [B, 1]
    scale = 1.0 / temperature if temperature > 0 else 1.0

    tokens = torch.full((batch, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    logps = torch.zeros((batch, max_new_tokens), dtype=torch.float32, device=device)
    entropies = torch.zeros_like(logps)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())

    cache_arg = _cache_keyword(model)
    with autocast:
        out = model(input_ids=input_ids, attention_mask=prompt_mask, position_ids=positions,
                    use_cache=True, logits_to_keep=1)
    cache = getattr(out, cache_arg)
    rows = torch.arange(batch, device=device)  # [b] original index of each row in the cache
    alive = torch.ones(batch, dtype=torch.bool, device=device)  # [b] rows still generating
    steps = 0
    for t in range(max_new_tokens):
        logits = out.logits[:, -1, :].float() * scale  # [b, V]
        logp_all = logits.log_softmax(dim=-1)
        if temperature > 0:
            sampling_logits = nucleus_filter(logits, top_p) if top_p < 1.0 else logits
            probs = sampling_logits.softmax(dim=-1)  # [b, V]
            if per_row_generators:
                token = torch.stack([torch.multinomial(probs[i], 1, generator=generator[row])[0]
                                     for i, row in enumerate(rows.tolist())])
            else:
                token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        else:
            token = logits.argmax(dim=-1)
        live = rows[alive]
        tokens[live, t] = token[alive]
        logps[live, t] = logp_all.gather(-1, token[:, None]).squeeze(-1)[alive]
        entropies[live, t] = -(logp_all.exp() * logp_all).sum(-1)[alive]
        lengths[live] += 1
        ended = alive & torch.isin(token, eos_ids)
        finished[rows[ended]] = True
        alive &= ~ended
        steps = t + 1
        if steps == max_new_tokens or not bool(alive.any()):
            break
        attention[rows, prompt_len + t] = 1
        # Finished rows leave the batch and the cache once they are an eighth of it, so a step costs
        # what the rows still generating need, not what the longest response needs.
        if int((~alive).sum()) * 8 >= len(rows):
            keep = alive.nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            rows, token, next_position, alive = rows[keep], token[keep], next_position[keep], alive[keep]
        with autocast:
            out = model(input_ids=token[:, None], attention_mask=attention[rows, :prompt_len + t + 1],
                        position_ids=next_position, use_cache=True, **{cache_arg: cache})
        cache = getattr(out, cache_arg)
        next_position = next_position + 1

    mask = (torch.arange(steps, device=device)[None, :] < lengths[:, None]).float()
    return Samples(tokens=tokens[:, :steps], logp=logps[:, :steps], entropy=entropies[:, :steps],
                   mask=mask, lengths=lengths, finished=finished)
