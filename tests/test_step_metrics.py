"""Per-step metrics of the local trainer are reduced the way their names say: max of the micro-batch maxima,
min of the minima, token-weighted means (a plain mean of per-update maxima understated FIPO's weights)."""

import dataclasses
from typing import ClassVar

import pytest
import torch

from fipo_bench.algorithms import DAPO
from fipo_bench.backends.local.trainer import LocalTrainer, Rollout, StepMetrics
from fipo_bench.config import build_config
from fipo_bench.sampling import left_pad
from fipo_bench.tasks import TaskData


@dataclasses.dataclass(frozen=True)
class TokenCounting(DAPO):
    """DAPO whose metrics are the micro-batch's response-token count under three names (not registered)."""

    seen: ClassVar[list] = []

    def token_loss(self, logp, old_logp, advantages, mask, ref_logp=None):
        loss, loss_mask, _ = super().token_loss(logp, old_logp, advantages, mask, ref_logp)
        tokens = mask.float().sum()
        self.seen.append(float(tokens))
        return loss, loss_mask, {"tokens_max": tokens, "tokens_min": tokens, "tokens": tokens}


def test_step_metrics_reduce_by_name():
    step = StepMetrics()
    step.add({"w_max": 1.2, "w_min": 0.9, "w_mean": 1.0}, tokens=10)
    step.add({"w_max": 1.05, "w_min": 0.7, "w_mean": 2.0}, tokens=30)
    assert step.reduced() == {"w_max": 1.2, "w_min": 0.7, "w_mean": pytest.approx((10 + 60) / 40)}


def test_the_trainer_reports_max_min_and_token_weighted_means_over_all_updates(random_base):
    from fipo_bench.tiny import TinyTask

    # 8 rows in groups of 2; 2 updates of 4 rows, each in 2 micro-batches of 2: 4 token counts per step.
    cfg = build_config("tiny-sums", options={"algos": "dapo"}, sets=[
        "rollout_batch_size=4", "samples_per_prompt=2", "mini_batch_size=2", "micro_batch_size=2"])
    data = TaskData(train=TinyTask(test_size=4).train_problems(8), evals={}, prompt_text=str, check=None)
    trainer = LocalTrainer(cfg, TokenCounting(), 0, random_base, data)

    g = torch.Generator().manual_seed(0)
    vocab = trainer.model.config.vocab_size
    prompt = torch.randint(4, vocab, (3,), generator=g).tolist()
    prompt_ids, prompt_mask = left_pad([prompt] * 8, trainer.pad_id)
    lengths = torch.tensor([1, 2, 3, 9, 4, 5, 6, 7])  # response tokens per row: every micro-batch differs
    mask = (torch.arange(9)[None] < lengths[:, None]).float()
    response_ids = torch.where(mask.bool(), torch.randint(4, vocab, (8, 9), generator=g), trainer.pad_id)
    rollout = Rollout(prompt_ids, prompt_mask, response_ids, mask, torch.zeros(8, 9) - 1.0,
                      torch.randn(8, generator=g), torch.arange(8) // 2)
    TokenCounting.seen.clear()
    metrics = trainer.update(rollout)
    seen = TokenCounting.seen
    assert metrics["updates"] == 2 and len(seen) == 4 and sum(seen) == lengths.sum()
    # Hand check: update 1 = rows 0-3 (1, 2, 3, 9 tokens), update 2 = rows 4-7 (4, 5, 6, 7); within each,
    # rows sorted by length and paired -> micro-batches of 3, 12, 9, 13 tokens.
    assert sorted(seen) == [3.0, 9.0, 12.0, 13.0]
    assert metrics["tokens_max"] == 13.0 and metrics["tokens_min"] == 3.0
    assert metrics["tokens"] == pytest.approx((9 + 144 + 81 + 169) / 37)
