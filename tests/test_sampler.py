"""The KV-cache sampler against references: HF `generate` and a cache-free loop (greedy tokens), a
full forward pass per sequence (log-probs), and a per-row loop (top-p filter)."""

import pytest
import torch

from fipo_bench.backends.local.trainer import response_logp
from fipo_bench.sampling import left_pad, nucleus_filter, sample

PAD, NO_EOS = 0, 10_000


@pytest.fixture(scope="module")
def model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = Qwen2Config(vocab_size=12, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                             tie_word_embeddings=True, pad_token_id=PAD, bos_token_id=None, eos_token_id=1)
        m = Qwen2ForCausalLM(config).eval()
        # Sharpen the random model so greedy decoding has clear winners (no argmax ties to break).
        m.lm_head.weight.data.mul_(8.0)
    return m


PROMPTS = [[3, 4, 5, 6, 7], [8, 9], [10, 11, 2], [5], [7, 7, 7, 7, 7, 7, 7]]


def naive_greedy(model, prompt: list[int], max_new_tokens: int, eos: int) -> list[int]:
    """One sequence, no padding, no cache: the full forward pass at every step."""
    ids = list(prompt)
    out = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            out.append(token)
            ids.append(token)
            if token == eos:
                break
    return out


def test_greedy_matches_generate_and_cache_free_loop(model):
    s = sample(model, PROMPTS, max_new_tokens=12, eos_token_id=NO_EOS, pad_token_id=PAD, temperature=0)
    ids, mask = left_pad(PROMPTS, PAD)
    generated = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12,
                               eos_token_id=NO_EOS, pad_token_id=PAD)[:, ids.shape[1]:]
    assert torch.equal(s.tokens, generated)
    for row, prompt in zip(s.tokens.tolist(), PROMPTS, strict=True):
        assert row == naive_greedy(model, prompt, 12, NO_EOS)
    assert s.lengths.tolist() == [12] * len(PROMPTS) and not s.finished.any()


def test_eos_ends_each_row_and_pads_after_it(model):
    free = sample(model, PROMPTS, max_new_tokens=12, eos_token_id=NO_EOS, pad_token_id=PAD, temperature=0)
    # Declare a token that some row emits mid-way the EOS: those rows must stop right after it.
    eos = free.tokens[0, 4].item()
    s = sample(model, PROMPTS, max_new_tokens=12, eos_token_id=eos, pad_token_id=PAD, temperature=0)
    ended = 0
    for i, prompt in enumerate(PROMPTS):
        expected = naive_greedy(model, prompt, 12, eos)
        length = int(s.lengths[i])
        assert s.tokens[i, :length].tolist() == expected
        assert bool(s.finished[i]) == (expected[-1] == eos)
        assert (s.tokens[i, length:] == PAD).all() and (s.mask[i, length:] == 0).all()
        assert (s.mask[i, :length] == 1).all() and (s.logp[i, length:] == 0).all()
        ended += bool(s.finished[i])
    assert ended >= 1
    ids, mask = left_pad(PROMPTS, PAD)
    generated = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=12,
                               eos_token_id=eos, pad_token_id=PAD)[:, ids.shape[1]:]
    width = s.tokens.shape[1]
    assert torch.equal(generated[:, :width], s.tokens)


@pytest.mark.parametrize(("temperature", "top_p"), [(1.0, 1.0), (0.7, 0.9)])
def test_returned_logp_and_entropy_match_a_forward_pass(model, temperature, top_p):
    prompts = PROMPTS * 4
    gen = torch.Generator().manual_seed(3)
    s = sample(model, prompts, max_new_tokens=10, eos_token_id=1, pad_token_id=PAD, temperature=temperature,
               top_p=top_p, generator=gen)
    for i, prompt in enumerate(prompts):
        n = int(s.lengths[i])
        full = torch.tensor([prompt + s.tokens[i, :n].tolist()])
        with torch.no_grad():
            logits = model(input_ids=full).logits[0, len(prompt) - 1:-1].float() / temperature
        logp_all = logits.log_softmax(-1)
        expected = logp_all.gather(-1, s.tokens[i, :n, None]).squeeze(-1)
        torch.testing.assert_close(s.logp[i, :n], expected, atol=1e-5, rtol=1e-5)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        torch.testing.assert_close(s.entropy[i, :n], entropy, atol=1e-5, rtol=1e-5)
    # The trainer's batched, padded recomputation agrees too.
    ids, mask = left_pad(prompts, PAD)
    with torch.no_grad():
        batched = response_logp(model, ids, mask, s.tokens, s.mask, temperature)
    torch.testing.assert_close(batched, s.logp, atol=1e-5, rtol=1e-5)


def test_top_p_never_samples_outside_the_nucleus(model):
    gen = torch.Generator().manual_seed(0)
    s = sample(model, PROMPTS * 8, max_new_tokens=6, eos_token_id=NO_EOS, pad_token_id=PAD, temperature=1.0,
               top_p=0.5, generator=gen)
    # A token outside the nucleus has probability < its top-1 rival's; here every sampled token must be
    # inside the 0.5-nucleus, so its own probability plus the mass of strictly likelier tokens >= 0.5 and
    # the mass of strictly likelier tokens < 0.5. Check through a forward pass.
    for i, prompt in enumerate(PROMPTS * 8):
        full = torch.tensor([prompt + s.tokens[i].tolist()])
        with torch.no_grad():
            probs = model(input_ids=full).logits[0, len(prompt) - 1:-1].float().softmax(-1)
        for t, token in enumerate(s.tokens[i].tolist()):
            likelier = probs[t][probs[t] > probs[t, token]].sum()
            assert likelier < 0.5 + 1e-6


def test_nucleus_filter_matches_a_per_row_loop():
    torch.manual_seed(0)
    logits = torch.randn(6, 9) * 2
    for top_p in (0.3, 0.75, 0.999, 1.0):
        filtered = nucleus_filter(logits, top_p)
        for row in range(logits.shape[0]):
            probs = logits[row].softmax(-1).tolist()
            order = sorted(range(9), key=lambda j: -probs[j])
            kept, mass = set(), 0.0
            for j in order:  # add tokens by decreasing probability until the mass reaches top_p
                kept.add(j)
                mass += probs[j]
                if mass >= top_p:
                    break
            assert {j for j in range(9) if filtered[row, j] > float("-inf")} == kept


def test_same_generator_seed_same_samples(model):
    def draw(seed):
        return sample(model, PROMPTS, max_new_tokens=8, eos_token_id=1, pad_token_id=PAD, temperature=1.0,
                      generator=torch.Generator().manual_seed(seed)).tokens

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))


def test_per_row_generators_make_each_sample_independent_of_its_batch(model):
    """With one generator per prompt, a row's sample is the same alone, in any batch, in any order, even
    as finished rows leave the batch."""
    prompts = PROMPTS * 3
    seeds = list(range(100, 100 + len(prompts)))

    def run(indices, eos):
        gens = [torch.Generator().manual_seed(seeds[i]) for i in indices]
        s = sample(model, [prompts[i] for i in indices], max_new_tokens=10, eos_token_id=eos,
                   pad_token_id=PAD, temperature=1.0, top_p=0.9, generator=gens)
        return {i: s.tokens[r, : int(s.lengths[r])].tolist() for r, i in enumerate(indices)}

    # Make the most frequently sampled token the EOS, so that rows end early and leave the batch.
    free = run(list(range(len(prompts))), NO_EOS)
    eos = max(range(12), key=lambda tok: sum(tokens.count(tok) for tokens in free.values()))
    together = run(list(range(len(prompts))), eos)
    assert any(len(tokens) < 10 for tokens in together.values())  # some rows did end early
    assert run(list(reversed(range(len(prompts)))), eos) == together
    assert {i: run([i], eos)[i] for i in range(len(prompts))} == together
    with pytest.raises(ValueError, match="3 generators for 15 prompts"):
        sample(model, prompts, max_new_tokens=2, eos_token_id=1, pad_token_id=PAD,
               generator=[torch.Generator()] * 3)


def test_several_eos_ids_end_a_row_at_the_first_of_them(model):
    free = sample(model, PROMPTS, max_new_tokens=12, eos_token_id=NO_EOS, pad_token_id=PAD, temperature=0)
    eos_a, eos_b = free.tokens[0, 3].item(), free.tokens[1, 5].item()
    both = sample(model, PROMPTS, max_new_tokens=12, eos_token_id=[eos_a, eos_b], pad_token_id=PAD,
                  temperature=0)
    for i in range(len(PROMPTS)):  # greedy: each row stops right after the first of either id
        row = free.tokens[i].tolist()
        stop = next((t + 1 for t, token in enumerate(row) if token in (eos_a, eos_b)), 12)
        assert both.tokens[i, :stop].tolist() == row[:stop] and int(both.lengths[i]) == stop
        assert bool(both.finished[i]) == (stop < 12 or row[11] in (eos_a, eos_b))
