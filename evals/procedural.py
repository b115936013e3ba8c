"""Procedural reasoning tasks from reasoning-gym (`pip install -e '.[tasks]'`), as datasets named

    rg:<task>[?<option>=<value>&...]      e.g. rg:chain_sum?min_terms=2&max_terms=8, rg:countdown?level=1

so any generator, at any size and difficulty, can train and evaluate a run without a data file. The
train/eval split is by question text (`split_of`), so no training question is ever evaluated on; a
`Curriculum` raises a training run's difficulty level as it goes. Golds are
procedural_check.ProceduralGold strings, graded by the task's own scorer.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from fipo_bench.coerce import parse_value
from fipo_bench.evals.problem import Problem
from fipo_bench.evals.procedural_check import TASKS_EXTRA_HINT, ProceduralGold

PREFIX = "rg:"
DEFAULT_SEED = 0
DEFAULT_SIZE = 1000
EVAL_ONE_IN = 4  # one problem in four is held out for evaluation
OUR_OPTIONS = ("level", "seed", "size")


def is_procedural(name: object) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def _reasoning_gym():
    try:
        import reasoning_gym
        from reasoning_gym import factory
    except ImportError as e:
        raise ImportError(f"rg: datasets need the `tasks` extra, which is not installed ({e}): "
                          f"{TASKS_EXTRA_HINT}") from None
    return reasoning_gym, factory


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(map(repr, close))}?" if close else ""


@dataclass(frozen=True)
class ProceduralSpec:
    """A parsed `rg:` dataset name."""

    name: str
    task: str
    options: tuple[tuple[str, Any], ...]  # coerced config fields, in the order given
    level: int | None
    seed: int
    size: int

    def config(self, level: int | None = None) -> dict[str, Any]:
        """The keyword arguments of reasoning_gym.create_dataset at `level` (default: the name's)."""
        _, factory = _reasoning_gym()
        level = self.level if level is None else level
        values: dict[str, Any] = {}
        if level is not None:
            curriculum = factory.create_curriculum(self.task)
            curriculum.set_global_level(level)
            generated = curriculum.generate_configuration({"seed": self.seed, "size": self.size})
            values = {f.name: getattr(generated, f.name) for f in dataclasses.fields(generated)}
        return {**values, **dict(self.options), "seed": self.seed, "size": self.size}

    def max_level(self) -> int:
        """The highest curriculum level (ValueError when the task has none)."""
        _, factory = _reasoning_gym()
        if not factory.has_curriculum(self.task):
            without = sorted(set(factory.DATASETS) - set(factory.CURRICULA))
            raise ValueError(f"{self.name}: reasoning-gym has no curriculum for {self.task!r}, so no "
                             f"difficulty level (the tasks without one: {', '.join(without)})")
        attributes = factory.create_curriculum(self.task).attributes.values()
        return max((len(a.levels) - 1 for a in attributes), default=0)


def parse_spec(name: str) -> ProceduralSpec:
    """Parse and check `rg:<task>?...` against reasoning-gym's registry; ValueError says what is wrong.

    `<task>` is any task registered in reasoning-gym (chain_sum, countdown, knights_knaves, ...). Options
    are the fields of the task's config dataclass (`min_terms=2`), coerced to the field's type (numbers;
    true/false; none for an optional field; comma-separated values for a list or tuple field; `%XX`
    escapes are decoded, `+` is a plus) and checked by the task's own `validate()`. Three options are ours:
    - `seed=N` (default 0): the generator's seed; the same name always gives the same problems;
    - `size=N` (default 1000): how many problems are generated, before the split;
    - `level=N`: the difficulty level of the task's reasoning-gym curriculum (its attributes set with
      `set_global_level(N)`, ranges inclusive of the easier levels, reasoning-gym's default context);
      explicit options override the level's values. Without `level`, the task's config defaults apply.
    """
    if not is_procedural(name):
        raise ValueError(f"{name!r} is not a procedural dataset name (rg:<task>?option=value&...)")
    _, factory = _reasoning_gym()
    task, _, query = name[len(PREFIX):].partition("?")
    if task not in factory.DATASETS:
        hint = _suggest(task, factory.DATASETS) or f"; the tasks: {', '.join(sorted(factory.DATASETS))}"
        raise ValueError(f"{name}: unknown reasoning-gym task {task!r}{hint}")
    config_cls = factory.DATASETS[task][1]
    hints = typing.get_type_hints(config_cls)
    fields = [f.name for f in dataclasses.fields(config_cls) if f.name not in ("seed", "size")]
    pairs = []
    for part in query.split("&") if query else []:
        key, sep, text = part.partition("=")
        if not sep or not key:
            raise ValueError(f"{name}: expected options as key=value pairs joined by '&', got {part!r}")
        pairs.append((unquote(key), unquote(text)))  # not unquote_plus: "operators=+,-" means + and -
    ours: dict[str, int] = {}
    options: dict[str, Any] = {}
    for key, text in pairs:
        if key in ours or key in options:
            raise ValueError(f"{name}: option {key!r} is given twice")
        if key in OUR_OPTIONS:
            try:
                ours[key] = int(text)
            except ValueError:
                raise ValueError(f"{name}: option {key!r}: expected an integer, got {text!r}") from None
        elif key in fields:
            options[key] = _coerce(name, key, text, hints.get(key, str))
        else:
            raise ValueError(f"{name}: unknown option {key!r} for task {task!r}"
                             f"{_suggest(key, [*fields, *OUR_OPTIONS])} (options: "
                             f"{', '.join([*fields, *OUR_OPTIONS])})")
    if ours.get("size", 1) < 1:
        raise ValueError(f"{name}: option 'size': expected an integer >= 1, got {ours['size']}")
    if ours.get("seed", 0) < 0:
        raise ValueError(f"{name}: option 'seed': expected an integer >= 0, got {ours['seed']}")
    spec = ProceduralSpec(name, task, tuple(options.items()), ours.get("level"),
                          ours.get("seed", DEFAULT_SEED), ours.get("size", DEFAULT_SIZE))
    if spec.level is not None and not 0 <= spec.level <= spec.max_level():
        raise ValueError(f"{name}: option 'level': expected 0 to {spec.max_level()} for {task!r}, "
                         f"got {spec.level}")
    check_config(spec, spec.level)
    return spec


def check_config(spec: ProceduralSpec, level: int | None) -> None:
    """The task's own validation of the config at `level` (its dataclass and `validate()`)."""
    _, factory = _reasoning_gym()
    try:
        config = factory.DATASETS[spec.task][1](**spec.config(level))
        if hasattr(config, "validate"):
            config.validate()
    except (AssertionError, TypeError, ValueError) as e:
        where = f" at level {level}" if level is not None else ""
        raise ValueError(f"{spec.name}: invalid options for {spec.task!r}{where}: "
                         f"{e or type(e).__name__}") from None


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def _coerce(name: str, key: str, text: str, hint: Any) -> Any:
    """`text` as a value of the config field type `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if hint is bool:
            if text.lower() not in (*_TRUE, *_FALSE):
                raise ValueError("expected true or false")
            return text.lower() in _TRUE
        if hint in (int, float):
            return hint(text)
        if hint is str:
            return text
        if origin is typing.Literal:
            match = [a for a in args if str(a) == text]
            if not match:
                raise ValueError(f"expected one of {', '.join(map(str, args))}")
            return match[0]
        if origin is typing.Union or type(hint).__name__ == "UnionType":
            if type(None) in args and text.lower() in ("none", "null"):
                return None
            for arg in (a for a in args if a is not type(None)):
                try:
                    return _coerce(name, key, text, arg)
                except ValueError:
                    continue
            raise ValueError(f"expected {hint}")
        if hint in (list, tuple) or origin in (list, tuple):
            items = [t.strip() for t in text.split(",") if t.strip()]
            item_type = args[0] if args else None  # tuple[int, ...], tuple[int, int], list[str]
            values = [_coerce(name, key, t, item_type) if item_type else parse_value(t) for t in items]
            return tuple(values) if (origin or hint) is tuple else values
        return parse_value(text)
    except ValueError as e:
        raise ValueError(f"{name}: option {key!r}: {e} (got {text!r})") from None


def split_of(question: str) -> str:
    """"eval" for one question in EVAL_ONE_IN (by SHA-256 of its text), else "train".

    Since the split depends on the text alone, no question of a training set is ever in an evaluation
    set, whatever the seed, size or level of either."""
    digest = hashlib.sha256(question.encode("utf-8", "surrogatepass")).digest()
    return "eval" if int.from_bytes(digest[:8], "little") % EVAL_ONE_IN == 0 else "train"


def generate(spec: ProceduralSpec, split: str, *, level: int | None = None,
             limit: int | None = None) -> list:
    """The problems of `split` ("train" or "eval") among the spec's `size` generated ones, in generation
    order, repeated questions kept once; the first `limit` of them (generation stops there). Problem ids
    are the generator's indices."""
    if split not in ("train", "eval"):
        raise ValueError(f"{spec.name}: split must be 'train' or 'eval', got {split!r}")
    reasoning_gym, _ = _reasoning_gym()
    config = spec.config(level)
    dataset = reasoning_gym.create_dataset(spec.task, **config)
    seen: set[str] = set()
    problems = []
    for index in range(spec.size):
        entry = dataset[index]
        question = entry.get("question")
        if not isinstance(question, str) or not question.strip() or question in seen:
            continue
        seen.add(question)
        if split_of(question) == split:
            problems.append(Problem(str(index), question, ProceduralGold(spec.task, config, entry)))
            if limit is not None and len(problems) >= limit:
                break
    if not problems:
        raise ValueError(f"{spec.name}: none of its {spec.size} generated problems is in the {split} split "
                         "(raise size=)")
    return problems


def load_procedural(name: str, split: str = "eval", limit: int | None = None) -> list:
    """The `split` problems of the dataset `name` (rg:...)."""
    return generate(parse_spec(name), split, limit=limit)


def label(name: str) -> str:
    """A directory name for an rg: dataset: `rg:chain_sum?max_terms=8` -> `rg-chain_sum-max_terms=8`."""
    out = "".join(c if c.isalnum() or c in "_.=,-" else "-" for c in name)
    return "-".join(part for part in out.split("-") if part)


# -- curriculum ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """When the curriculum moves up a level (RunConfig.curriculum): `{"every": N}` moves up one level
    every N steps; `{"accuracy": A, "window": W}` moves up once the mean training accuracy of the last W
    steps at the current level reaches A. Optional `"max_level"` caps it."""

    every: int | None = None
    accuracy: float | None = None
    window: int | None = None
    max_level: int | None = None

    @classmethod
    def from_config(cls, values: dict[str, Any]) -> Schedule:
        """ValueError naming the key for a bad `curriculum` config value."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}; expected {{\"every\": steps}} or "
                             f"{{\"accuracy\": threshold, \"window\": steps}}, optionally \"max_level\"")
        schedule = cls(**values)
        by_steps, by_accuracy = schedule.every is not None, schedule.accuracy is not None
        if by_steps == by_accuracy:
            raise ValueError("expected exactly one of 'every' (steps per level) or 'accuracy' (a threshold)")
        for key in ("every", "window", "max_level"):
            value = getattr(schedule, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0
                                      or (value == 0 and key != "max_level")):
                raise ValueError(f"'{key}': expected an integer >= {0 if key == 'max_level' else 1}, "
                                 f"got {value!r}")
        if by_accuracy:
            if isinstance(schedule.accuracy, bool) or not isinstance(schedule.accuracy, (int, float)) \
                    or not 0 < schedule.accuracy <= 1:
                raise ValueError(f"'accuracy': expected a number in (0, 1], got {schedule.accuracy!r}")
            if schedule.window is None:
                raise ValueError("'accuracy' needs 'window' (steps whose mean accuracy is compared)")
        elif schedule.window is not None:
            raise ValueError("'window' goes with 'accuracy', not with 'every'")
        return schedule


class Curriculum:
    """The training problems of a run whose difficulty rises on a `Schedule`. The trainer draws problems
    through it and reports each step's accuracy; its state goes into checkpoints. Evaluation stays at the
    level the dataset name gives, so its curve is comparable across steps."""

    def __init__(self, spec: ProceduralSpec, schedule: Schedule, *,
                 keep: Callable[[Any], bool] | None = None, limit: int | None = None,
                 pools: dict[int, list] | None = None):
        """`keep` filters training problems (prompt length); `limit` caps each level's problems; `pools`
        caches generated levels (shared by the curricula of one run's trainers)."""
        self.spec, self.schedule, self.keep, self.limit = spec, schedule, keep, limit
        top = spec.max_level()
        self.max_level = top if schedule.max_level is None else min(top, schedule.max_level)
        self.level = spec.level or 0
        self.history: list[float] = []  # training accuracies of the steps at the current level
        self._pools = {} if pools is None else pools

    def pool(self, level: int) -> list:
        """The training problems of `level` (those `keep` accepts)."""
        if level not in self._pools:
            problems = [p for p in generate(self.spec, "train", level=level, limit=self.limit)
                        if self.keep is None or self.keep(p)]
            if not problems:
                raise ValueError(f"{self.spec.name}: no training problem of level {level} fits "
                                 "(max_prompt_length)")
            self._pools[level] = problems
        return self._pools[level]

    def problems(self, indices: list[int]) -> list:
        """The problems at `indices` (positions of the run's prompt order) at the current level."""
        pool = self.pool(self.level)
        return [pool[i % len(pool)] for i in indices]

    def end_step(self, accuracy: float) -> dict[str, Any]:
        """Record a step's training accuracy, move up when the schedule says so; returns the metrics of
        the step (the level it trained at)."""
        trained_at = self.level
        self.history.append(float(accuracy))
        s = self.schedule
        if s.every is not None:
            up = len(self.history) >= s.every
        else:
            recent = self.history[-s.window:]
            up = len(recent) >= s.window and sum(recent) / len(recent) >= s.accuracy
        if up and self.level < self.max_level:
            self.level += 1
            self.history = []
        del self.history[:-(s.every or s.window)]  # all a decision reads
        return {"curriculum_level": trained_at}

    def state_dict(self) -> dict[str, Any]:
        return {"level": self.level, "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        level = state["level"]
        if not 0 <= level <= self.max_level:
            raise ValueError(f"curriculum state: level {level} is outside 0..{self.max_level}")
        self.level, self.history = int(level), [float(a) for a in state["history"]]
