"""What a run trains and evaluates on: the base checkpoint, and the task (problems, prompts, checker).

Two steps, because they run in different places:
- `prepare_base` runs once per matrix, in the driver, before any run starts: the built-in model's SFT
  warm-up (cached by its recipe), or a check of `--model` (a GGUF file is converted here, once).
- `load_task` never trains and is deterministic in the config, so every process that trains a run (the
  driver itself, or a Ray worker) builds its own copy; nothing large or unpicklable (closures, a
  tokenizer) travels between processes. Within one process it is built once.
Both raise ConfigError naming the config field for anything wrong, before step 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fipo_bench.config import ConfigError, RunConfig

REWARD_CORRECT, REWARD_INCORRECT = 1.0, -1.0
"""The reward of a correct and of any other response, in every backend: DAPO (arXiv 2503.14476) eq. 9,
rule-based +1 / -1."""


@dataclass
class Verdict:
    """The parts of a checker result the trainer uses (fipo_bench.evals.CheckResult fits)."""

    verdict: str
    extracted: str | None
    correct: bool
    score: float | None = None  # a procedural task's raw score (reasoning-gym's, in [0, 1])


Checker = Callable[[list[str], list[str]], list[Verdict]]


@dataclass
class TaskData:
    """What the trainer needs from a task or dataset: problems as prompts, and a checker."""

    train: list  # list[fipo_bench.evals.Problem]
    evals: dict[str, list]  # eval dataset name -> problems
    prompt_text: Callable[[str], str]  # problem text -> prompt text
    check: Checker  # (responses, golds) -> verdicts
    # A new procedural.Curriculum per trainer when the run raises the difficulty as it goes, else None.
    curriculum: Callable[[], Any] | None = None


def tiny_recipe(cfg: RunConfig):
    """The built-in model's recipe of `cfg` (its task included); a ConfigError names a bad field."""
    from fipo_bench.tiny import TinyRecipe

    try:
        return TinyRecipe(task=_tiny_task(cfg), **cfg.tiny_recipe)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config field 'tiny_recipe': {e}") from None


def _tiny_task(cfg: RunConfig):
    from fipo_bench.tiny import task_from_config

    try:
        return task_from_config(cfg.tiny_task)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config field 'tiny_task': {e}") from None


def prepare_base(cfg: RunConfig, *, progress=None, dry_run: bool = False) -> str:
    """The base checkpoint every run of the matrix starts from (the built-in model is trained here
    unless cached; a dry run only checks its recipe)."""
    if cfg.model is None:
        recipe = tiny_recipe(cfg)
        if dry_run:
            return f"<built-in tiny base checkpoint, recipe {recipe.hash()}: trained or reused at launch>"
        from fipo_bench.tiny import ensure_base_checkpoint

        return str(ensure_base_checkpoint(recipe, cfg.base_cache_dir, progress=progress))
    from fipo_bench.evals.runner import validate_checkpoint

    try:
        validate_checkpoint(cfg.model)  # a model directory, a GGUF file, or a Hub id that loads now
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"config field 'model': {e}") from None
    return _resolved_model(cfg)


def _resolved_model(cfg: RunConfig) -> str:
    """`--model` as an HF directory or Hub id: a GGUF file is converted once (cached by its contents)."""
    from fipo_bench import models

    try:
        return models.resolve_model(cfg.model, cfg.base_cache_dir)
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"config field 'model': {e}") from None


_TASKS: dict[str, TaskData] = {}


def load_task(cfg: RunConfig) -> TaskData:
    """The training problems, eval sets, prompt format and checker of `cfg` (built once per process)."""
    key = cfg.to_json()
    if key not in _TASKS:
        _TASKS.clear()  # one config per process at a time; never a growing cache
        _TASKS[key] = _tiny_data(cfg) if cfg.model is None else _dataset_data(cfg)
    return _TASKS[key]


def _tiny_data(cfg: RunConfig) -> TaskData:
    task = _tiny_task(cfg)
    tests = task.test_problems[:cfg.eval_limit or None]

    def check(responses: list[str], golds: list[str]) -> list[Verdict]:
        return [_verdict(task.check(r, g)) for r, g in zip(responses, golds, strict=True)]

    train = task.train_problems(cfg.num_train_problems or 100_000)
    return TaskData(train=train, evals={"tiny": tests}, prompt_text=lambda text: text, check=check)


def _dataset_data(cfg: RunConfig) -> TaskData:
    from fipo_bench import models
    from fipo_bench.evals import check_answers, format_prompt, load_dataset

    try:
        tokenizer = models.load_tokenizer(_resolved_model(cfg))
    except (OSError, ValueError, ImportError) as e:
        raise ConfigError(f"config field 'model': {e}") from None

    def prompt_text(text: str) -> str:
        return format_prompt(text, cfg.prompt_template, tokenizer)

    def fits_prompt(problem) -> bool:
        return len(models.encode_prompt(tokenizer, prompt_text(problem.problem))) <= cfg.max_prompt_length

    curriculum = None
    try:
        if cfg.curriculum:  # a task without a curriculum fails here, before step 1
            curriculum = _curriculum(cfg, fits_prompt)
            start = curriculum()
            train = fits = start.pool(start.level)  # the curriculum keeps only prompts that fit
        else:
            train = load_dataset(cfg.dataset, cfg.data_dir, limit=cfg.num_train_problems or None,
                                 split="train")
            fits = [p for p in train if fits_prompt(p)]
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise ConfigError(f"config field 'dataset': {e}") from None

    if not fits:
        raise ConfigError(f"config field 'max_prompt_length': no prompt of {cfg.dataset} fits in "
                          f"{cfg.max_prompt_length} tokens")
    if len(fits) < len(train):
        print(f"note: dropped {len(train) - len(fits)} of {len(train)} prompts longer than "
              f"max_prompt_length={cfg.max_prompt_length}")
    try:
        evals = {dataset_label(name): load_dataset(name, cfg.data_dir, limit=cfg.eval_limit or None)
                 for name in cfg.eval_datasets}
    except (OSError, ValueError, KeyError, ImportError) as e:
        raise ConfigError(f"config field 'eval_datasets': {e}") from None

    def check(responses: list[str], golds: list[str]) -> list[Verdict]:
        return [_verdict(r) for r in check_answers(responses, golds)]

    return TaskData(train=fits, evals=evals, prompt_text=prompt_text, check=check, curriculum=curriculum)


def _curriculum(cfg: RunConfig, keep: Callable[[Any], bool]) -> Callable[[], Any]:
    """A factory of the run's procedural.Curriculum (one per trainer; generated levels are shared)."""
    from fipo_bench.evals import procedural

    spec = procedural.parse_spec(cfg.dataset)
    schedule = procedural.Schedule.from_config(cfg.curriculum)
    pools: dict[int, list] = {}
    return lambda: procedural.Curriculum(spec, schedule, keep=keep, limit=cfg.num_train_problems or None,
                                         pools=pools)


def dataset_label(name: str) -> str:
    """The directory name of an eval dataset: its name, or a file's stem ("data/x.jsonl" -> "x"); a
    procedural task's name without URL punctuation ("rg:chain_sum?max_terms=8" ->
    "rg-chain_sum-max_terms=8")."""
    if name.startswith("rg:"):
        from fipo_bench.evals.procedural import label

        return label(name)
    path = Path(name)
    return path.stem if path.suffix in (".jsonl", ".json", ".parquet") or len(path.parts) > 1 else name


def _verdict(result: Any) -> Verdict:
    return Verdict(verdict=result.verdict, extracted=result.extracted, correct=bool(result.correct),
                   score=getattr(result, "score", None))
