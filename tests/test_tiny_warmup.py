"""The SFT warm-up: batches, schedule, determinism, the recipe-hash cache and its atomicity."""

import dataclasses
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from fipo_bench.tiny import ChainTask, TinyRecipe, TinyTask, ensure_base_checkpoint
from fipo_bench.tiny import warmup as warmup_module
from fipo_bench.tiny.warmup import build_base_model, default_cache_dir, lr_at, sft_batch, warm_up

# A recipe that trains in well under a second: it tests the machinery, not the quality.
SMALL = TinyRecipe(
    task=TinyTask(max_terms=3, max_value=9, test_size=8),
    hidden_size=16, num_layers=1, num_heads=2, ffn_size=32, max_length=32,
    steps=4, batch_size=4, lr_warmup_steps=1,
)


def test_sft_batch_masks_the_prompt_and_padding_and_ends_with_eos():
    _, tokenizer = build_base_model(SMALL)
    ids = tokenizer.convert_tokens_to_ids
    input_ids, attention_mask, labels = sft_batch(
        SMALL.task, tokenizer, [(3, 4), (12, 5, 6)], ["Answer:7", "12+5=17;17+6=23;Answer:23"]
    )
    # Row 0: "3+4?" (4 tokens) + "Answer:7" (2 tokens) + EOS = 7 tokens, padded to row 1's length.
    # Row 1: "12+5+6?" (7) + "12+5=17;17+6=23;Answer:23" (8 + 8 + 3) + EOS = 27 tokens.
    assert input_ids.shape == labels.shape == attention_mask.shape == (2, 27)
    row0 = [ids(c) for c in "3+4?"] + [ids("Answer:"), ids("7"), tokenizer.eos_token_id]
    assert input_ids[0, :7].tolist() == row0
    assert input_ids[0, 7:].eq(tokenizer.pad_token_id).all()
    assert labels[0].tolist() == [-100] * 4 + row0[4:] + [-100] * 20
    assert attention_mask[0].tolist() == [1] * 7 + [0] * 20
    assert labels[1, :7].eq(-100).all() and labels[1, 7:].ne(-100).all()
    assert labels[1, -1].item() == tokenizer.eos_token_id
    assert tokenizer.decode(input_ids[1]) == "12+5+6?12+5=17;17+6=23;Answer:23<eos>"


def test_lr_schedule_warms_up_linearly_then_decays_to_a_tenth():
    recipe = dataclasses.replace(SMALL, steps=110, lr=1.0, lr_warmup_steps=10)
    # Warm-up: step s (0-based) uses (s + 1) / 10 of the peak.
    assert [lr_at(s, recipe) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    # Cosine over the remaining 100 steps: 0.1 + 0.45 (1 + cos(pi p)); p = 0 -> 1.0, 0.5 -> 0.55, 1 -> 0.1.
    assert lr_at(10, recipe) == pytest.approx(1.0)
    assert lr_at(60, recipe) == pytest.approx(0.55)
    assert lr_at(110, recipe) == pytest.approx(0.1)
    assert all(lr_at(s + 1, recipe) <= lr_at(s, recipe) for s in range(10, 110))


@pytest.mark.parametrize("task", [SMALL.task, ChainTask(min_terms=2, max_terms=3, test_size=8)],
                         ids=["sums", "chain"])
def test_warm_up_is_deterministic_and_learns(task):
    recipe = dataclasses.replace(SMALL, task=task, steps=40, hidden_size=32, num_heads=2, ffn_size=64,
                                 lr=1e-2)
    losses = []
    a, _, stats = warm_up(recipe, progress=lambda step, total, m: losses.append((step, total, m["loss"])))
    b, _, _ = warm_up(recipe)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    # Progress every 25 steps and at the end.
    assert [(s, t) for s, t, _ in losses] == [(25, 40), (40, 40)]
    # A random init predicts ~uniformly over 19 tokens: loss ~ ln 19 = 2.94; training must go well below.
    assert stats["final_loss"] < 0.8 * math.log(19)
    assert stats["steps"] == 40


def _field_changes(obj):
    """One valid changed value for every field of a (nested) recipe dataclass."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            for sub_name, sub_value in _field_changes(value):
                yield f"{f.name}.{sub_name}", dataclasses.replace(obj, **{f.name: sub_value})
        elif isinstance(value, bool):
            yield f.name, dataclasses.replace(obj, **{f.name: not value})
        elif isinstance(value, float):
            yield f.name, dataclasses.replace(obj, **{f.name: value / 2 if value else 0.5})
        elif f.name in ("num_heads", "hidden_size"):  # heads must divide the width
            yield f.name, dataclasses.replace(obj, **{f.name: value * 2})
        else:
            yield f.name, dataclasses.replace(obj, **{f.name: value + 1})


def test_recipe_hash_changes_with_every_field():
    base = TinyRecipe()
    assert base.hash() == TinyRecipe().hash()
    changed = dict(_field_changes(base))
    # Every field (and every task field) is covered.
    expected = {f.name for f in dataclasses.fields(TinyRecipe) if f.name != "task"}
    expected |= {f"task.{f.name}" for f in dataclasses.fields(TinyTask)}
    assert set(changed) == expected
    hashes = {name: recipe.hash() for name, recipe in changed.items()}
    assert base.hash() not in hashes.values()
    assert len(set(hashes.values())) == len(hashes)


def test_sums_recipes_keep_their_hash_and_the_task_name_is_hashed():
    # The default recipe's hash before tasks had names (main at e9ff1d4): its cached checkpoint stays valid.
    assert TinyRecipe().hash() == "6a61e728cdb02074"
    assert TinyRecipe().to_dict()["task"]["name"] == "sums"
    chain = TinyRecipe(task=ChainTask())
    assert chain.to_dict()["task"] == {"name": "chain", **dataclasses.asdict(ChainTask())}
    assert chain.hash() != TinyRecipe().hash()
    assert chain.hash() != TinyRecipe(task=ChainTask(seed=1)).hash()


def test_invalid_recipe_names_the_field():
    with pytest.raises(ValueError, match="TinyRecipe.steps"):
        TinyRecipe(steps=0)
    with pytest.raises(ValueError, match="TinyRecipe.steps_share_late"):
        TinyRecipe(steps_share_late=1.5)
    with pytest.raises(ValueError, match="num_heads"):
        TinyRecipe(hidden_size=30, num_heads=4)


def test_cache_is_built_once_and_reused(tmp_path, monkeypatch):
    path = ensure_base_checkpoint(SMALL, cache_dir=tmp_path)
    assert path.parent == tmp_path and SMALL.hash() in path.name
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "qwen2" and tokenizer.decode(tokenizer.encode("1+2?")) == "1+2?"

    def must_not_train(*args, **kwargs):
        raise AssertionError("the cached checkpoint should have been reused")

    monkeypatch.setattr(warmup_module, "warm_up", must_not_train)
    assert ensure_base_checkpoint(SMALL, cache_dir=tmp_path) == path
    # A different recipe is a different entry (and needs training).
    with pytest.raises(AssertionError, match="reused"):
        ensure_base_checkpoint(dataclasses.replace(SMALL, seed=1), cache_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [path.name]


def test_cache_dir_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FIPO_BENCH_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("FIPO_BENCH_CACHE")
    assert default_cache_dir() == default_cache_dir().home() / ".cache" / "fipo-bench"


def test_failed_warm_up_leaves_no_cache_entry(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(warmup_module, "warm_up", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_base_checkpoint(SMALL, cache_dir=tmp_path)
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".lock")]


def test_killed_warm_up_leaves_no_entry_and_the_next_call_rebuilds(tmp_path):
    # The child kills itself (SIGKILL: no cleanup code runs) in the middle of the warm-up.
    script = textwrap.dedent(f"""
        import dataclasses, os, signal
        from fipo_bench.tiny import SumsTask, TinyRecipe, ensure_base_checkpoint
        recipe = dataclasses.replace({SMALL!r}, steps=30)
        ensure_base_checkpoint(recipe, cache_dir={str(tmp_path)!r},
                               progress=lambda *a: os.kill(os.getpid(), signal.SIGKILL))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stderr
    recipe = dataclasses.replace(SMALL, steps=30)
    entry = tmp_path / f"tiny-base-{recipe.hash()}"
    assert not entry.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert leftovers  # the killed build's temporary directory, never renamed into place
    path = ensure_base_checkpoint(recipe, cache_dir=tmp_path)
    assert path == entry and (path / "warmup.json").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # stale temporaries cleaned up
    assert os.path.isfile(path / "model.safetensors")
