"""The run configuration of `fipo-bench run`: one frozen dataclass shared by every backend.

A config is built from layers, later ones winning: RunConfig defaults < preset (fipo_bench.presets)
< config file (`--config run.json`) < command-line options < `--set key=value` overrides. It is
validated once, before the first step: an error names the field and what was expected.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fipo_bench.coerce import coerce, describe, parse_value
from fipo_bench.io import read_json
from fipo_bench.presets import BUILTIN_PRESET, MODEL_PRESET, get_preset
from fipo_bench.registry import algorithm_class

BACKENDS = ("local", "openrlhf")
DTYPES = ("auto", "float32", "bfloat16")
# Fields whose value is a dict of free-form keyword options: `--set tiny_recipe.sft_steps=50` sets one
# key inside. Any other dotted prefix names an algorithm (`--set fipo.half_life=16`).
DICT_FIELDS = ("tiny_task", "tiny_recipe", "curriculum")
# What a model of one's own is evaluated on when no eval_datasets is set: "tiny" is the built-in task.
MODEL_EVAL_DATASETS = ("aime24",)


class ConfigError(ValueError):
    """A config value is invalid; the message names the field and what was expected."""


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything a comparison run needs; one instance covers the whole algo x seed matrix."""

    run_name: str = ""
    """Results go to <output_dir>/<run_name>/. Empty: derived deterministically from the config, so
    running the same command again resumes the same run."""
    output_dir: str = "results"
    """Parent directory of run directories."""
    algos: tuple[str, ...] = ("grpo", "dapo", "fipo")
    """Registered algorithm names to compare (fipo_bench.algorithms)."""
    algo_overrides: dict[str, dict] = field(default_factory=dict)
    """Per-algorithm hyperparameter overrides: {"fipo": {"half_life": 16.0}}."""
    seeds: tuple[int, ...] = (0,)
    """Every algorithm runs once per seed; the seed fixes prompt order and rollout sampling."""
    backend: str = "local"
    """"local" (one process, fipo_bench.backends.local.trainer) or "openrlhf" (Ray cluster)."""
    preset: str = "tiny"
    """Name of the preset these values started from (recorded; the values themselves are below)."""
    model: str | None = None
    """HF model directory, hub id or GGUF file (fipo_bench.models); None = the built-in tiny model after
    its SFT warm-up."""
    dataset: str | None = None
    """Training dataset name or jsonl/parquet file (fipo_bench.evals.load_dataset); None = built-in task."""
    data_dir: str | None = None
    """Directory of offline dataset copies (else $FIPO_BENCH_DATA, else the Hub)."""
    prompt_template: str = "dapo"
    """fipo_bench.evals.format_prompt template for math datasets (the built-in task has its own); `tags`
    asks for reasoning-gym's `<answer>` tags (procedural tasks read those, an `Answer:` line or a box)."""
    curriculum: dict[str, Any] = field(default_factory=dict)
    """Raise the difficulty level of an `rg:` training dataset during the run (fipo_bench.evals.procedural):
    {"every": steps} or {"accuracy": threshold, "window": steps}, optionally "max_level"; {} = fixed."""
    tiny_task: dict[str, Any] = field(default_factory=dict)
    """The built-in task (built-in model only): ``name`` (chain | sums) and the keyword fields of its
    class (fipo_bench.tiny.task_from_config)."""
    tiny_recipe: dict[str, Any] = field(default_factory=dict)
    """Keyword fields of fipo_bench.tiny.TinyRecipe: the built-in model and its SFT warm-up."""
    base_cache_dir: str | None = None
    """Where base checkpoints are cached, the built-in one and GGUF conversions (None: $FIPO_BENCH_CACHE,
    else ~/.cache/fipo-bench)."""
    num_train_problems: int = 100_000
    """Training prompts drawn from the task, or a cap on the dataset's rows (0 = all rows)."""

    num_steps: int = 60
    """Training steps; one step = one rollout batch and its mini-batch updates."""
    rollout_batch_size: int = 16
    """Prompts per step (after dynamic sampling's filter, when the algorithm uses it)."""
    samples_per_prompt: int = 8
    """Group size: responses sampled per prompt."""
    mini_batch_size: int = 8
    """Prompts per optimizer step; rollout_batch_size / mini_batch_size updates per step. The same for
    every algorithm of a run, so all of them take the same number of updates on the same data."""
    micro_batch_size: int = 0
    """Sequences per forward/backward pass (gradient accumulation inside a mini-batch); 0 = all."""
    max_prompt_length: int = 64
    """Prompts longer than this (tokens) are dropped from the training data."""
    max_response_length: int = 64
    """Max new tokens per training response (overlong shaping is relative to it)."""
    temperature: float = 1.0
    """Rollout sampling temperature; the policy's log-probs use the same temperature."""
    top_p: float = 1.0
    """Rollout nucleus sampling."""
    recompute_old_logp: bool = False
    """Recompute old_logp by a forward pass after sampling instead of using the sampler's log-probs.
    In float32 both agree to rounding; under bf16 the KV-cache path drifts, so GPU presets turn it on."""

    lr: float = 1e-4
    """AdamW learning rate after warm-up (constant afterwards)."""
    warmup_steps: int = 0
    """Training steps of linear learning-rate warm-up (per rollout step, as verl counts them)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    grad_clip: float = 1.0
    """Max global gradient norm per optimizer step."""
    max_gen_batches: int = 10
    """Dynamic sampling: at most this many generation batches per step before training on what was kept."""

    eval_every: int = 10
    """Evaluate every this many steps (plus step 0 and the last step); 0 = only step 0 and the end."""
    eval_datasets: tuple[str, ...] = ("tiny",)
    """Evaluation datasets: "tiny" = the built-in task's test split, else names/files for load_dataset.
    With a model of one's own and no eval_datasets set, build_config makes it MODEL_EVAL_DATASETS."""
    eval_k: int = 1
    """Samples per evaluation problem."""
    eval_temperature: float = 1.0
    """Evaluation sampling temperature (0 = greedy)."""
    eval_top_p: float = 0.7
    """Evaluation nucleus sampling (the DAPO/FIPO protocol's 0.7)."""
    eval_limit: int = 0
    """Evaluate on the first this many problems of each dataset; 0 = all."""
    eval_max_response_length: int = 0
    """Max new tokens at evaluation; 0 = max_response_length."""
    checkpoint_every: int = 10
    """Save a checkpoint (resume point) every this many steps and at the end; 0 = only at the end."""
    keep_checkpoints: int = 0
    """Checkpoints kept per run, newest first (resume needs only the newest); a completed run's final
    checkpoint then keeps the model but not the optimizer state. 0 = keep every checkpoint whole."""

    device: str = "auto"
    """"auto" (cuda when available), "cpu", "cuda" or "cuda:N"."""
    dtype: str = "auto"
    """Autocast dtype: "auto" = bfloat16 on GPU, float32 on CPU."""

    def __post_init__(self) -> None:
        validate(self)

    # -- serialisation -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RunConfig:
        """Build from plain JSON values; unknown keys and wrong types are errors naming the key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object of RunConfig fields, "
                              f"got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**{k: _from_json(k, v, source) for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str, *, source: str = "config") -> RunConfig:
        return cls.from_dict(json.loads(text), source=source)

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def fingerprint(self) -> str:
        """Short hash of everything that changes results (not the run name or output directory)."""
        data = {k: v for k, v in self.to_dict().items() if k not in ("run_name", "output_dir")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:8]

    def default_run_name(self) -> str:
        """Deterministic from the config: the same command resumes the same directory."""
        base = Path(self.model).name if self.model else self.preset
        return f"{base}-{'-'.join(self.algos)}-{self.fingerprint()}"

    @property
    def updates_per_step(self) -> int:
        return self.rollout_batch_size // self.mini_batch_size


# -- validation ----------------------------------------------------------------------------------------


def _fail(name: str, expected: str, value: Any) -> None:
    raise ConfigError(f"config field {name!r}: expected {expected}, got {value!r}")


def validate(c: RunConfig) -> None:
    """Check every field; the first problem raises ConfigError naming the field."""
    for name, annotation in _field_types().items():
        v = getattr(c, name)
        fits, _ = coerce(v, annotation)
        if not fits or isinstance(v, list):  # from_dict makes JSON lists tuples; a config holds tuples
            _fail(name, describe(annotation), v)
        if isinstance(v, float) and not math.isfinite(v):
            _fail(name, "a finite number", v)
        if v == "" and type(None) in typing.get_args(annotation):  # an optional path or name
            _fail(name, "a non-empty string or null", v)

    if not c.algos or not all(isinstance(a, str) and a for a in c.algos):
        _fail("algos", "a non-empty list of algorithm names", c.algos)
    if len(set(c.algos)) != len(c.algos):
        _fail("algos", "distinct names", c.algos)
    if not c.seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in c.seeds):
        _fail("seeds", "a non-empty list of integers >= 0", c.seeds)
    if len(set(c.seeds)) != len(c.seeds):
        _fail("seeds", "distinct seeds", c.seeds)
    for name, overrides in c.algo_overrides.items():
        if name not in c.algos:
            _fail("algo_overrides", f"keys among algos {list(c.algos)}", name)
        if not isinstance(overrides, dict):
            _fail(f"algo_overrides.{name}", "an object of hyperparameter values", overrides)
    if c.run_name and (c.run_name != Path(c.run_name).name or c.run_name.startswith(".")):
        _fail("run_name", "a plain directory name (no '/', not starting with '.')", c.run_name)
    if c.backend not in BACKENDS:
        _fail("backend", f"one of {list(BACKENDS)}", c.backend)
    if not (c.device in ("auto", "cpu", "cuda") or c.device.startswith("cuda:")):
        _fail("device", '"auto", "cpu", "cuda" or "cuda:N"', c.device)
    if c.dtype not in DTYPES:
        _fail("dtype", f"one of {list(DTYPES)}", c.dtype)
    for name in ("num_steps", "rollout_batch_size", "samples_per_prompt", "mini_batch_size",
                 "max_prompt_length", "max_response_length", "max_gen_batches", "eval_k"):
        if getattr(c, name) < 1:
            _fail(name, "an integer >= 1", getattr(c, name))
    for name in ("micro_batch_size", "warmup_steps", "eval_every", "eval_limit", "checkpoint_every",
                 "keep_checkpoints", "eval_max_response_length", "num_train_problems"):
        if getattr(c, name) < 0:
            _fail(name, "an integer >= 0", getattr(c, name))
    if c.rollout_batch_size % c.mini_batch_size:
        _fail("mini_batch_size", f"a divisor of rollout_batch_size={c.rollout_batch_size}", c.mini_batch_size)
    if c.samples_per_prompt < 2:
        _fail("samples_per_prompt", "at least 2 (group advantages need a group)", c.samples_per_prompt)
    if c.temperature <= 0:
        _fail("temperature", "a number > 0 (training samples from the policy)", c.temperature)
    if c.eval_temperature < 0:
        _fail("eval_temperature", "a number >= 0 (0 = greedy)", c.eval_temperature)
    for name in ("top_p", "eval_top_p"):
        if not 0 < getattr(c, name) <= 1:
            _fail(name, "a number in (0, 1]", getattr(c, name))
    if c.lr <= 0:
        _fail("lr", "a number > 0", c.lr)
    if c.weight_decay < 0:
        _fail("weight_decay", "a number >= 0", c.weight_decay)
    if c.grad_clip <= 0:
        _fail("grad_clip", "a number > 0", c.grad_clip)
    if not c.eval_datasets or not all(isinstance(d, str) and d for d in c.eval_datasets):
        _fail("eval_datasets", "a non-empty list of dataset names or files", c.eval_datasets)
    if c.dataset is None and c.model is not None:
        _fail("dataset", "a dataset name or file when a model is given (the built-in task is for the "
                         "built-in model's tokenizer)", c.dataset)
    if c.dataset is not None and c.model is None:
        raise ConfigError(f"config field 'dataset': {c.dataset!r} needs a model to train: the built-in model "
                          "trains on its built-in task only; pass --model (a model directory or Hub id)")
    procedural = [d for d in (c.dataset, *c.eval_datasets) if isinstance(d, str) and d.startswith("rg:")]
    if c.backend == "openrlhf" and procedural:
        raise ConfigError(f"config field {'dataset' if procedural[0] == c.dataset else 'eval_datasets'!r}: "
                          f"{procedural[0]!r} is a procedural task, which the openrlhf backend does not "
                          "support (its reward function gets a gold answer string, not the generated entry "
                          "that reasoning-gym's scorer reads); use --backend local")
    if c.curriculum:
        from fipo_bench.evals.procedural import Schedule

        if not (isinstance(c.dataset, str) and c.dataset.startswith("rg:")):
            _fail("curriculum", "{} unless the training dataset is a procedural task (rg:<task>)",
                  c.curriculum)
        try:
            Schedule.from_config(c.curriculum)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config field 'curriculum': {e}") from None
    if c.model is not None and "tiny" in c.eval_datasets:
        _fail("eval_datasets", 'dataset names or files ("tiny" is the built-in task; e.g. '
                               "--set eval_datasets=aime24)", c.eval_datasets)


@functools.cache
def _field_types() -> dict[str, Any]:
    """RunConfig's field annotations, resolved (the module uses postponed annotations)."""
    return typing.get_type_hints(RunConfig)


def _from_json(name: str, value: Any, source: str) -> Any:
    """A field's value from JSON or a command line, converted (fipo_bench.coerce: JSON lists become
    tuples, ints are floats where a float is expected); "0,1,2" is a list."""
    annotation = _field_types()[name]
    if isinstance(value, str) and typing.get_origin(annotation) is tuple:  # "0,1,2" from a command line
        items = [item.strip() for item in value.split(",") if item.strip()]
        _refuse_split_options(name, items, source)
        value = [parse_value(item) for item in items]
    ok, converted = coerce(value, annotation)
    if not ok:
        raise ConfigError(f"{source}: field {name!r}: expected {describe(annotation)}, got {value!r}")
    return converted


_NAME_LIKE = re.compile(r"[A-Za-z./~][\w./~-]*")


def _refuse_split_options(name: str, items: list[str], source: str) -> None:
    """A comma inside an rg: name's option list (`operators=+,-`) also separates a comma-separated list's
    items: refuse what reads as a piece of the previous name's options rather than a dataset name."""
    for before, item in itertools.pairwise(items):
        if before.startswith("rg:") and "?" in before and not item.startswith("rg:") \
                and not _NAME_LIKE.fullmatch(item):
            raise ConfigError(
                f"{source}: field {name!r}: {item!r} reads as part of {before!r}'s options (a comma inside "
                f"an rg: option list also separates the list's items): write the list as JSON, e.g. "
                f"--set '{name}=[\"{before},{item}\"]', or the comma as %2C")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# -- building a config from layers ---------------------------------------------------------------------


def apply_sets(values: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """Apply `key=value` overrides to a dict of config values.

    `field=value` sets a RunConfig field; `tiny_recipe.key=value` / `tiny_task.key=value` set a key of
    that dict field; `<algo>.field=value` sets an algorithm hyperparameter (validated by the registry
    when the algorithm is built).
    """
    values = dict(values)
    names = {f.name for f in fields(RunConfig)}
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. lr=1e-5 or fipo.half_life=16)")
        value = parse_value(raw.strip())
        head, dot, sub = key.partition(".")
        if not dot:
            if head not in names:
                raise ConfigError(f"--set {item!r}: unknown config field {head!r}; known: {sorted(names)}")
            values[head] = value
        elif head in DICT_FIELDS:
            values[head] = {**values.get(head, {}), sub: value}
        elif head in names:
            raise ConfigError(f"--set {item!r}: config field {head!r} has no sub-fields")
        else:
            overrides = {k: dict(v) for k, v in values.get("algo_overrides", {}).items()}
            overrides.setdefault(head, {})[sub] = value
            values["algo_overrides"] = overrides
    return values


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a `--config` JSON file of RunConfig fields (any subset)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {path}: no such file")
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of RunConfig fields")
    known = {f.name for f in fields(RunConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {unknown}; known fields: {sorted(known)}")
    return data


def build_config(preset: str | None = None, *, config_file: str | Path | None = None,
                 options: dict[str, Any] | None = None, sets: list[str] | None = None) -> RunConfig:
    """Layers: RunConfig defaults < PRESETS[preset] < config file < options < --set overrides.

    Without a preset: presets.MODEL_PRESET when the other layers name a model, else the built-in model's.
    """
    file_values = load_config_file(config_file) if config_file is not None else {}
    given = apply_sets({**file_values, **{k: v for k, v in (options or {}).items() if v is not None}},
                       sets or [])
    if preset is None:
        preset = BUILTIN_PRESET if given.get("model") is None else MODEL_PRESET
    if preset == MODEL_PRESET and given.get("model") is None:
        raise ConfigError(f"preset {MODEL_PRESET!r} is for a model of one's own: pass --model (a model "
                          "directory, Hub id or GGUF file)")
    values: dict[str, Any] = {**get_preset(preset), "preset": preset}
    # A preset carries overrides for several algorithms: they apply to those in the run, under any
    # explicit ones. An explicit override of an algorithm that is not in the run stays (validation
    # reports it).
    preset_overrides = values.pop("algo_overrides", {})
    values.update(file_values)
    values.update({k: v for k, v in (options or {}).items() if v is not None})
    values = apply_sets(values, sets or [])
    user_set = {*file_values, *(k for k, v in (options or {}).items() if v is not None),
                *(item.partition("=")[0].strip() for item in sets or [])}
    # The tiny preset evaluates on the built-in task, which only the built-in model can take.
    preset_eval = "eval_datasets" not in user_set and list(values.get("eval_datasets", ())) == ["tiny"]
    if values.get("model") is not None and preset_eval:
        values["eval_datasets"] = MODEL_EVAL_DATASETS
    # A procedural training task is evaluated on its own held-out split unless eval_datasets is given.
    if "eval_datasets" not in user_set and str(values.get("dataset") or "").startswith("rg:"):
        values["eval_datasets"] = (values["dataset"],)
    algos = values.get("algos", RunConfig.algos)
    if isinstance(algos, str):
        algos = [a.strip() for a in algos.split(",") if a.strip()]
    explicit = values.get("algo_overrides", {})
    merged = {a: dict(preset_overrides[a]) for a in algos if a in preset_overrides}
    for a, overrides in explicit.items():
        if isinstance(overrides, dict) and a in merged:
            # A hyperparameter the user gives under its old name replaces the preset's value under the new.
            renamed = _renamed_hyperparameters(a)
            replaced = {renamed[k] for k in overrides if k in renamed}
            merged[a] = {**{k: v for k, v in merged[a].items() if k not in replaced}, **overrides}
        else:
            merged[a] = {**merged.get(a, {}), **overrides} if isinstance(overrides, dict) else overrides
    values["algo_overrides"] = merged
    return RunConfig.from_dict(values, source=str(config_file) if config_file else "config")


def _renamed_hyperparameters(algo: str) -> dict[str, str]:
    """Old name -> new name of the algorithm's renamed hyperparameters ({} for an unknown algorithm, which
    validation reports)."""
    try:
        return dict(getattr(algorithm_class(algo), "renamed_hyperparameters", {}))
    except KeyError:
        return {}
