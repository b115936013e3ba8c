"""The tiny tokenizer and model: exact round trips, one token per symbol, HF save/load."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from fipo_bench.tiny import TinyRecipe, TinyTask
from fipo_bench.tiny.warmup import build_base_model


def _task_strings(task: TinyTask) -> list[str]:
    strings = []
    for p in task.test_problems + task.train_problems(200):
        terms = task.parse_prompt(p.problem)
        strings += [p.problem, task.response(terms, "direct"), task.response(terms, "steps")]
        strings.append(p.problem + task.response(terms, "steps"))
    return strings


def test_tokenizer_round_trips_every_task_string_with_one_token_per_symbol():
    _, tokenizer = build_base_model(TinyRecipe(hidden_size=8, num_heads=2, ffn_size=8, num_layers=1))
    for text in _task_strings(TinyTask(seed=0, test_size=100)):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.encode(text) == ids  # no special token is added by default
        assert tokenizer.decode(ids) == text
        # "Answer:" is one token, every other character one token each.
        assert len(ids) == len(text) - text.count("Answer:") * (len("Answer:") - 1)
    # Hand-counted: "3+4?" is 4 tokens, "Answer:7" is 2.
    assert len(tokenizer.encode("3+4?")) == 4 and len(tokenizer.encode("Answer:7")) == 2
    specials = {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id}
    assert len(specials) == 3
    with_eos = [*tokenizer.encode("Answer:7"), tokenizer.eos_token_id]
    assert tokenizer.decode(with_eos, skip_special_tokens=True) == "Answer:7"
    # Characters outside the task's alphabet are dropped, not an error.
    assert tokenizer.encode("1 x?") == tokenizer.encode("1?")


def test_model_is_a_small_qwen2_with_tied_embeddings():
    model, tokenizer = build_base_model(TinyRecipe())
    assert model.config.model_type == "qwen2"
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    n_params = sum(p.numel() for p in model.parameters())
    # Per layer: attention 4*128*128 weights + 3*128 q/k/v biases; SwiGLU 3*128*512; two RMSNorms 2*128.
    per_layer = 4 * 128 * 128 + 3 * 128 + 3 * 128 * 512 + 2 * 128
    assert n_params == 4 * per_layer + len(tokenizer) * 128 + 128  # + tied embedding + final norm
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id


def test_same_recipe_seed_gives_the_same_init_and_does_not_touch_the_global_rng():
    recipe = TinyRecipe(hidden_size=16, num_heads=2, ffn_size=32, num_layers=1)
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, _ = build_base_model(recipe)
    after = torch.rand(3)
    assert torch.equal(before, after)
    b, _ = build_base_model(recipe)
    c, _ = build_base_model(TinyRecipe(hidden_size=16, num_heads=2, ffn_size=32, num_layers=1, seed=1))
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


def test_hf_save_and_load_gives_identical_logits_and_tokenizer(tmp_path):
    # transformers 5 loads a qwen2 checkpoint's tokenizer as Qwen2Tokenizer, rebuilt from the saved
    # vocabulary: it must tokenize every task string as the built tokenizer does.
    model, tokenizer = build_base_model(TinyRecipe(hidden_size=32, num_heads=2, ffn_size=64, num_layers=2))
    model.eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    for text in _task_strings(TinyTask(seed=5, test_size=50)):
        assert loaded_tokenizer.encode(text) == tokenizer.encode(text)
        assert loaded_tokenizer.decode(tokenizer.encode(text)) == text
    text = "47+8+85?47+8=55;55+85=140;Answer:140"
    assert (loaded_tokenizer.eos_token_id, loaded_tokenizer.pad_token_id) == (
        tokenizer.eos_token_id, tokenizer.pad_token_id)
    ids = torch.tensor([tokenizer.encode(text)])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
