"""Units of the local trainer: prompt order, gradient accumulation, and its independence from names."""

import io
import tokenize
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from fipo_bench.algorithms import get_algorithm, list_algorithms
from fipo_bench.backends.local.trainer import LocalTrainer, PromptOrder, Rollout, response_logp
from fipo_bench.config import build_config
from fipo_bench.sampling import left_pad
from fipo_bench.tasks import TaskData

REPO = Path(__file__).resolve().parents[1]


def test_prompt_order_first_batch_does_not_depend_on_refills():
    a = PromptOrder(num_problems=50, batch_size=8, max_gen_batches=1, seed=3)
    b = PromptOrder(num_problems=50, batch_size=8, max_gen_batches=10, seed=3)
    for step in range(1, 20):
        assert a.indices(step, 0) == b.indices(step, 0)
    # Refills come from another stream: they never shift what generation batch 0 sees.
    assert b.indices(2, 1) != b.indices(2, 0)


def test_prompt_order_is_a_permutation_per_epoch_and_depends_on_the_seed():
    order = PromptOrder(num_problems=24, batch_size=8, max_gen_batches=1, seed=0)
    epoch = [i for step in (1, 2, 3) for i in order.indices(step, 0)]
    assert sorted(epoch) == list(range(24))
    assert epoch != list(range(24))
    other = PromptOrder(num_problems=24, batch_size=8, max_gen_batches=1, seed=1)
    assert other.indices(1, 0) != order.indices(1, 0)


def make_trainer(base, algo: str, **sets):
    from fipo_bench.tiny import TinyTask

    cfg = build_config("tiny-sums", options={"algos": algo}, sets=[f"{k}={v}" for k, v in sets.items()])
    task = TinyTask(test_size=4)
    data = TaskData(train=task.train_problems(8), evals={}, prompt_text=lambda t: t,
                    check=lambda r, g: [])
    alg = get_algorithm(algo, **cfg.algo_overrides.get(algo, {}))
    return LocalTrainer(cfg, alg, 0, base, data)


def random_rollout(trainer, rows: int = 6, seed: int = 0) -> Rollout:
    """Prompts and responses of different lengths, with old_logp from the model itself."""
    g = torch.Generator().manual_seed(seed)
    vocab = trainer.model.config.vocab_size
    prompts = [torch.randint(4, vocab, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g).tolist()
               for _ in range(rows)]
    prompt_ids, prompt_mask = left_pad(prompts, trainer.pad_id)
    lengths = torch.randint(1, 9, (rows,), generator=g)
    response_ids = torch.randint(4, vocab, (rows, 8), generator=g)
    mask = (torch.arange(8)[None] < lengths[:, None]).float()
    response_ids = torch.where(mask.bool(), response_ids, trainer.pad_id)
    with torch.no_grad():
        old = response_logp(trainer.model, prompt_ids, prompt_mask, response_ids, mask, 1.0)
    old = old + 0.05 * torch.randn(old.shape, generator=g) * mask  # a policy that moved a little
    advantages = torch.randn(rows, generator=g)
    return Rollout(prompt_ids, prompt_mask, response_ids, mask, old, advantages, torch.arange(rows) // 3)


def gradients(trainer, rollout) -> list[torch.Tensor]:
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.backward_mini_batch(rollout, torch.arange(len(rollout.advantages)))
    return [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]


@pytest.mark.parametrize("algo", ["dapo", "grpo"])  # token-mean and seq-mean-token-mean aggregation
def test_micro_batches_accumulate_the_one_pass_gradient(random_base, algo):
    whole = make_trainer(random_base, algo)
    micro = make_trainer(random_base, algo, micro_batch_size=2)
    rollout = random_rollout(whole)
    for g_whole, g_micro in zip(gradients(whole, rollout), gradients(micro, rollout), strict=True):
        torch.testing.assert_close(g_micro, g_whole, atol=1e-6, rtol=1e-5)


def test_rollout_rows_trims_padding_without_changing_logp(random_base):
    trainer = make_trainer(random_base, "dapo")
    rollout = random_rollout(trainer)
    index = torch.tensor([1, 4])
    part = rollout.rows(index)
    assert part.prompt_mask[:, 0].any() and part.mask.sum(1).max() == part.mask.shape[1]
    with torch.no_grad():
        trimmed = response_logp(trainer.model, part.prompt_ids, part.prompt_mask, part.response_ids,
                                part.mask, 1.0)
        full = response_logp(trainer.model, rollout.prompt_ids, rollout.prompt_mask, rollout.response_ids,
                             rollout.mask, 1.0)[index, :part.mask.shape[1]]
    torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=1e-5)


def test_reference_model_only_when_the_algorithm_asks(random_base):
    for algo in ("grpo", "dapo"):
        trainer = make_trainer(random_base, algo)
        assert (trainer.reference is not None) == trainer.alg.needs_reference


def _code_tokens(path: Path):
    """NAME and STRING tokens of a module, docstrings and comments excluded."""
    tokens = list(tokenize.generate_tokens(io.StringIO(path.read_text()).readline))
    previous = tokenize.NEWLINE
    for tok in tokens:
        is_docstring = tok.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT,
                                                                    tokenize.DEDENT, tokenize.NL)
        if tok.type in (tokenize.NAME, tokenize.STRING) and not is_docstring:
            yield tok
        if tok.type not in (tokenize.COMMENT, tokenize.NL):
            previous = tok.type


def test_trainer_code_never_names_an_algorithm():
    names = set(list_algorithms())
    assert {"grpo", "dapo", "fipo"} <= names
    for module in ("fipo_bench/backends/local/trainer.py", "fipo_bench/backends/local/critic.py",
                   "fipo_bench/sampling.py", "fipo_bench/backends/local/matrix.py"):
        for tok in _code_tokens(REPO / module):
            text = tok.string.strip("'\"").lower() if tok.type == tokenize.STRING else tok.string.lower()
            assert text not in names, f"{module}:{tok.start[0]} names algorithm {tok.string}"


def sampled_rollout(trainer, *, temperature: float, top_p: float, rows: int = 32) -> tuple[Rollout, object]:
    """Rows of different lengths sampled by the trainer itself, old_logp = the sampler's log-probs."""
    g = torch.Generator().manual_seed(1)
    vocab = trainer.model.config.vocab_size
    prompts = [torch.randint(4, vocab, (int(torch.randint(2, 9, (1,), generator=g)),), generator=g).tolist()
               for _ in range(rows)]
    (s,), _ = trainer.generate(prompts, max_new_tokens=12, temperature=temperature, top_p=top_p,
                               generator=torch.Generator().manual_seed(2), chunk=rows)
    assert len(set(s.lengths.tolist())) > 3  # lengths vary, so the passes pad and bucket
    prompt_ids, prompt_mask = left_pad(prompts, trainer.pad_id)
    rollout = Rollout(prompt_ids, prompt_mask, s.tokens, s.mask, s.logp, torch.zeros(rows),
                      torch.arange(rows) // 4)
    return rollout, s


def unpadded_logp(model, rollout: Rollout, i: int, temperature: float) -> torch.Tensor:
    """log-probs of row i's response tokens from one forward over that row alone, no padding. [n]"""
    n = int(rollout.mask[i].sum())
    prompt, response = rollout.prompt_ids[i][rollout.prompt_mask[i].bool()], rollout.response_ids[i, :n]
    with torch.no_grad():
        logits = model(input_ids=torch.cat([prompt, response])[None]).logits[0, len(prompt) - 1:-1].float()
    return (logits / temperature).log_softmax(-1).gather(-1, response[:, None]).squeeze(-1)


@pytest.mark.parametrize(("temperature", "top_p", "micro_batch_size"), [(1.0, 1.0, 0), (0.7, 0.8, 12)])
def test_sampler_logp_equal_the_recompute_pass_in_float32(random_base, temperature, top_p, micro_batch_size):
    """The log-probs the sampler returns are what the trainer's own forward pass computes (float32, CPU):
    recompute_old_logp changes nothing but rounding. With top_p < 1 both are of the full distribution at
    the temperature (the sampler draws from the nucleus; the PPO ratio compares untruncated policies)."""
    trainer = make_trainer(random_base, "dapo", micro_batch_size=micro_batch_size, temperature=temperature)
    rollout, s = sampled_rollout(trainer, temperature=temperature, top_p=top_p)
    recomputed = trainer._forward_logp(trainer.model, rollout)
    torch.testing.assert_close(recomputed, s.logp, atol=2e-6, rtol=1e-5)
    for i in (0, 7, 31):  # a reference independent of both
        n = int(s.lengths[i])
        torch.testing.assert_close(recomputed[i, :n], unpadded_logp(trainer.model, rollout, i, temperature),
                                   atol=2e-6, rtol=1e-5)


def test_recompute_pass_runs_the_training_pass_buckets(random_base, monkeypatch):
    """old_logp is recomputed through the training forward's path: the same length sort, micro-batches and
    buckets (so the same padded shapes and the same log-probs), not one padded pass over all rows."""
    import fipo_bench.backends.local.trainer as local

    trainer = make_trainer(random_base, "dapo", micro_batch_size=20)
    rollout, _ = sampled_rollout(trainer, temperature=1.0, top_p=1.0)
    shapes: list[tuple] = []
    original = local.response_logp

    def recording(model, prompt_ids, prompt_mask, response_ids, response_mask, temperature):
        shapes.append((prompt_ids.shape, response_ids.shape))
        return original(model, prompt_ids, prompt_mask, response_ids, response_mask, temperature)

    monkeypatch.setattr(local, "response_logp", recording)
    old_logp = trainer._forward_logp(trainer.model, rollout)
    recompute_shapes, shapes[:] = list(shapes), []
    captured = {}

    def policy_loss(logp, old, advantages, mask, ref_logp):
        captured.setdefault("logp", []).append(logp.detach())
        captured.setdefault("old", []).append(old)
        return (logp * mask).sum() * 0, {}

    monkeypatch.setattr(trainer, "alg", SimpleNamespace(policy_loss=policy_loss, loss_agg="token-mean",
                                                        needs_correctness=False))
    rollout.old_logp = old_logp
    trainer.backward_mini_batch(rollout, torch.arange(len(rollout.advantages)))
    assert shapes == recompute_shapes and len(shapes) == 5  # micro-batches of 20, 12: buckets 8+8+4, 8+4
    torch.testing.assert_close(torch.cat(captured["logp"]), torch.cat(captured["old"]), atol=0, rtol=0)


def test_recomputed_old_logp_is_the_policy_before_the_first_update(random_base, monkeypatch):
    """With recompute_old_logp, every update sees old_logp = the log-probs of the policy that sampled the
    rollout (a reference: that policy's own unpadded forward), though the no-grad pass covers only the later
    updates' rows; the first update's rows take them from its own forward (ratio exactly 1)."""
    import copy

    trainer = make_trainer(random_base, "dapo", recompute_old_logp="true", samples_per_prompt=4,
                           mini_batch_size=4, rollout_batch_size=8, lr=0.05)
    rollout, s = sampled_rollout(trainer, temperature=1.0, top_p=1.0)
    rollout.advantages = torch.randn(32, generator=torch.Generator().manual_seed(3))
    sampler_policy = copy.deepcopy(trainer.model)
    passes = []
    forward_logp = trainer._forward_logp
    monkeypatch.setattr(trainer, "_forward_logp",
                        lambda model, r, rows=None: passes.append(rows) or forward_logp(model, r, rows))
    micro_rows, losses = [], []  # one micro-batch per pass here
    micro_batches, dapo = trainer._length_sorted_micro_batches, trainer.alg

    def recording_micro_batches(r, rows):
        micro_rows.extend(micro_batches(r, rows))
        return micro_rows[-1:]

    def policy_loss(logp, old, *rest):
        losses.append((logp.detach(), old))
        return dapo.policy_loss(logp, old, *rest)

    monkeypatch.setattr(trainer, "_length_sorted_micro_batches", recording_micro_batches)
    monkeypatch.setattr(trainer, "alg", SimpleNamespace(policy_loss=policy_loss, loss_agg="token-mean",
                                                        needs_correctness=False))
    trainer.update(rollout)
    assert [rows.tolist() for rows in passes] == [list(range(16, 32))]  # the second update's rows only
    # The no-grad pass, then the two updates (the policy-loss calls pair up with these).
    assert [sorted(rows.tolist()) for rows in micro_rows] == [list(range(16, 32)), list(range(16)),
                                                             list(range(16, 32))]
    micro_rows = micro_rows[1:]
    assert torch.equal(losses[0][0], losses[0][1])  # the first update is exactly on-policy
    assert not torch.allclose(losses[1][0], losses[1][1], atol=1e-3)  # the policy moved in between
    for rows, (_, old) in zip(micro_rows, losses, strict=True):
        for j, i in enumerate(rows.tolist()):
            n = int(s.lengths[i])
            torch.testing.assert_close(old[j, :n], unpadded_logp(sampler_policy, rollout, i, 1.0),
                                       atol=2e-6, rtol=1e-5)
