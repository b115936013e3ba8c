"""The SFT warm-up that turns a random tiny Qwen2 into the RL base model, cached by its recipe.

Known-good recipe (issue 3, measured on a 2-core CPU): a fixed 70/30 direct/step-by-step mix needs
~8 minutes before the model learns to copy operands; a two-phase mix (mostly step-by-step first, so
the model learns the chain, then mostly direct, so the base model prefers short answers) gets there in
about two minutes. The loss is on response tokens only (EOS included). With the defaults the base
model writes steps for about a fifth of the test prompts, and step-by-step is far more accurate than
direct (benchmarks/tiny_task_design.py prints the numbers).

The chain task (the ``tiny`` preset, issue 20) uses the same schedule with its own mix: each further
step written with chance 0.9 in the first phase (mostly full chains: the model learns to add), 0.5 in
the last 15% (the base model mostly answers after 0-1 steps, and writes 3+ steps in 12% of its samples).
Measured: final loss 0.40 after 600 steps; accuracy per forced number of steps in ChainTask's
docstring. Its batches are longer than the sums task's (mostly 10-term chains in the first phase): one
step took 1.78x a sums step in the first phase and 1.15x in the last (1 thread, side by side on a shared
machine); measured on an idle 2-core machine (2 threads, fresh cache): 111 s (warmup.json).

The checkpoint is a Hugging Face directory (model + tokenizer + ``recipe.json`` + ``warmup.json``)
under ``<cache>/tiny-base-<hash of the recipe>``; it is built in a temporary directory and renamed
into place, so a killed warm-up never leaves an entry that looks complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fipo_bench.io import build_cache_entry, write_json
from fipo_bench.tiny.task import ChainTask, SumsTask

# Bump when the code changes what a recipe produces (model, tokenizer, training), so stale cache
# entries are not reused.
WARMUP_FORMAT_VERSION = 2

ProgressCallback = Callable[[int, int, dict], None]
"""progress(completed_steps, total_steps, metrics) called during the warm-up (metrics: {"loss": float})."""


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that determines the base checkpoint; its hash names the cache entry."""

    task: ChainTask | SumsTask = field(default_factory=SumsTask)
    """The task trained on (RL and evaluation should use the same task). The default is the sums task,
    whose recipe defaults below were tuned for it (issue 3); the ``tiny`` preset sets the chain task and
    its own warm-up values."""
    hidden_size: int = 128
    """Model width."""
    num_layers: int = 4
    """Transformer blocks."""
    num_heads: int = 4
    """Attention heads (no grouped-query sharing: as many key/value heads)."""
    ffn_size: int = 512
    """Width of the SwiGLU feed-forward layer."""
    max_length: int = 256
    """Maximum positions (prompt + response) the model supports."""
    steps: int = 600
    """Optimizer steps of the warm-up: sized for about two minutes on 2 CPU cores (issue 3 budget)."""
    batch_size: int = 32
    """Sequences per step."""
    lr: float = 3e-3
    """Peak AdamW learning rate (linear warm-up, then cosine decay to 10% of it)."""
    lr_warmup_steps: int = 50
    """Steps of linear learning-rate warm-up."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    steps_share_early: float = 0.9
    """Chance of writing steps during the first phase: for the sums task, of answering step by step;
    for the chain task, of writing each further step (`ChainTask.warmup_response`)."""
    steps_share_late: float = 0.3
    """The same chance after `phase_switch`; sets how often (and, for chain, how far) the base model
    writes steps."""
    phase_switch: float = 0.85
    """Fraction of `steps` after which the late mix is used."""
    bf16_autocast: bool = False
    """Train under bfloat16 autocast (weights stay float32). Off by default: on a CPU without native
    bf16 (most laptops; the 2-core CI machine) torch emulates it, and a warm-up step took 4.1 s under
    autocast vs 0.20 s in float32 (default recipe, 15 steps, 2 threads), i.e. ~40 vs ~2 minutes."""
    seed: int = 0
    """Seeds the initialisation, the data order and the style draws."""

    def __post_init__(self) -> None:
        positive = ("hidden_size", "num_layers", "num_heads", "ffn_size", "max_length", "steps", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"TinyRecipe.{name}: expected >= 1, got {getattr(self, name)}")
        for name in ("steps_share_early", "steps_share_late", "phase_switch"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"TinyRecipe.{name}: expected a value in [0, 1], got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"TinyRecipe.hidden_size ({self.hidden_size}) must be divisible by "
                             f"num_heads ({self.num_heads})")
        if self.lr <= 0:
            raise ValueError(f"TinyRecipe.lr: expected > 0, got {self.lr}")

    def to_dict(self) -> dict:
        """Every field; the task's fields with its ``name`` (as `task_from_config` takes them)."""
        values = dataclasses.asdict(self)
        values["task"] = {"name": self.task.name, **values["task"]}
        return values

    def hash(self) -> str:
        """Short content hash of every field, the task's name and the warm-up format version."""
        recipe = self.to_dict()
        if recipe["task"]["name"] == "sums":
            # Hashed as before tasks had names, so the sums checkpoints already cached stay valid.
            del recipe["task"]["name"]
        payload = json.dumps({"format": WARMUP_FORMAT_VERSION, "recipe": recipe}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """$FIPO_BENCH_CACHE, else ~/.cache/fipo-bench."""
    env = os.environ.get("FIPO_BENCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fipo-bench"


def ensure_base_checkpoint(
    recipe: TinyRecipe | None = None,
    cache_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Path of the warmed-up base checkpoint for `recipe`, training it first if it is not cached
    (once, even for concurrent callers: fipo_bench.io.build_cache_entry)."""
    recipe = recipe or TinyRecipe()
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()

    def build(directory: Path) -> None:
        model, tokenizer, stats = warm_up(recipe, progress=progress)
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        write_json(directory / "recipe.json", {"hash": recipe.hash(), "recipe": recipe.to_dict()})
        write_json(directory / "warmup.json", stats)  # written last: marks the directory complete

    return build_cache_entry(cache_dir / f"tiny-base-{recipe.hash()}", build, marker="warmup.json")


def build_base_model(recipe: TinyRecipe):
    """(randomly initialised model, tokenizer) of the recipe; the torch RNG of the caller is untouched."""
    import torch

    from fipo_bench.tiny.model import build_model
    from fipo_bench.tiny.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = build_model(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            hidden_size=recipe.hidden_size,
            num_layers=recipe.num_layers,
            num_heads=recipe.num_heads,
            ffn_size=recipe.ffn_size,
            max_length=recipe.max_length,
        )
    return model, tokenizer


def sft_batch(task: ChainTask | SumsTask, tokenizer, terms_batch, responses: list[str]) -> tuple:
    """(input_ids[B,L], attention_mask[B,L], labels[B,L]) for prompt + response + EOS, right-padded.

    Labels are -100 on the prompt and padding, so the loss covers response tokens (and EOS) only.
    """
    import torch

    prompts = [task.prompt(terms) for terms in terms_batch]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]
    seqs = [p + r + [tokenizer.eos_token_id] for p, r in zip(prompt_ids, response_ids, strict=True)]
    length = max(map(len, seqs))
    input_ids = torch.full((len(seqs), length), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(seqs), length), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, (p, seq) in enumerate(zip(prompt_ids, seqs, strict=True)):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        labels[i, len(p) : len(seq)] = torch.tensor(seq[len(p) :])
        attention_mask[i, : len(seq)] = 1
    return input_ids, attention_mask, labels


def lr_at(step: int, recipe: TinyRecipe) -> float:
    """Linear warm-up to `lr`, then cosine decay to 10% of it at the last step."""
    if step < recipe.lr_warmup_steps:
        return recipe.lr * (step + 1) / recipe.lr_warmup_steps
    progress = (step - recipe.lr_warmup_steps) / max(1, recipe.steps - recipe.lr_warmup_steps)
    return recipe.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))


def warm_up(recipe: TinyRecipe, progress: ProgressCallback | None = None):
    """Run the SFT warm-up in memory; returns (model in eval mode, tokenizer, stats dict)."""
    import torch

    model, tokenizer = build_base_model(recipe)
    task = recipe.task
    rng = random.Random(f"fipo-bench-tiny/sft/{recipe.seed}")
    train_terms = task.iter_train_terms(stream=f"sft-{recipe.seed}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    switch_step = int(recipe.phase_switch * recipe.steps)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.bf16_autocast)
    model.train()
    start, losses = time.perf_counter(), []
    for step in range(recipe.steps):
        share = recipe.steps_share_early if step < switch_step else recipe.steps_share_late
        terms_batch = [next(train_terms) for _ in range(recipe.batch_size)]
        responses = [task.warmup_response(terms, rng, share) for terms in terms_batch]
        input_ids, attention_mask, labels = sft_batch(task, tokenizer, terms_batch, responses)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, recipe)
        with autocast:
            loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        if progress is not None and ((step + 1) % 25 == 0 or step + 1 == recipe.steps):
            progress(step + 1, recipe.steps, {"loss": float(losses[-1])})
    model.eval()
    tail = torch.stack(losses[-50:]).float().mean()
    stats = {
        "steps": recipe.steps,
        "final_loss": float(tail),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "torch_threads": torch.get_num_threads(),
    }
    return model, tokenizer, stats
