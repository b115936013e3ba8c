"""The algorithm registry: one name -> one frozen hyperparameter dataclass.

Three ways in, all equivalent once loaded:
- `@register_algorithm("name")` on a class in a module of `fipo_bench.algorithms` (every module there
  is imported on first lookup, so dropping a file next to grpo.py is enough);
- an entry point in the group `fipo_bench.algorithms` of any installed distribution, pointing at a
  module (whose import registers its classes) or at an `Algorithm` subclass (registered under the entry
  point's name);
- `register_variant("name", base, **defaults)`: a published setting of an existing algorithm under its
  own name (e.g. "fipo-7b"), a subclass that differs only in defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
import typing
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, TypeVar

from fipo_bench.coerce import coerce, describe

ENTRY_POINT_GROUP = "fipo_bench.algorithms"

_REGISTRY: dict[str, type[RegisteredAlgorithm]] = {}
_discovered = False



class RegisteredAlgorithm(Protocol):
    """What the registry knows of an algorithm class: a dataclass, and the name it is registered under."""

    name: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]


AlgorithmClass = TypeVar("AlgorithmClass", bound=type[RegisteredAlgorithm])


def register_algorithm(name: str) -> Callable[[AlgorithmClass], AlgorithmClass]:
    """Class decorator: register a frozen-dataclass algorithm under `name` (lower case, unique)."""
    if not isinstance(name, str) or not name or name != name.strip().lower():
        raise ValueError(f"algorithm names are non-empty lower-case strings, got {name!r}")

    def decorate(cls: AlgorithmClass) -> AlgorithmClass:
        params = getattr(cls, "__dataclass_params__", None)
        if params is None or not params.frozen:
            raise TypeError(f"register_algorithm({name!r}): {cls.__qualname__} must be a frozen dataclass")
        existing = _REGISTRY.get(name)
        if existing is not None and _qualified(existing) != _qualified(cls):
            raise ValueError(f"algorithm name {name!r} is already registered by {_qualified(existing)}")
        if cls.__dict__.get("name", name) != name:
            raise ValueError(f"{_qualified(cls)} is already registered as {cls.__dict__['name']!r}; "
                             f"use register_variant for a second name")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def register_variant(
    name: str, base: str | type[RegisteredAlgorithm], doc: str, **defaults: Any
) -> type[RegisteredAlgorithm]:
    """Register `base` with different defaults under `name`; returns the new subclass.

    The variant keeps every field (and its documentation) of `base`; `doc` says what the setting is
    and where it was published.
    """
    base_cls = _lookup(base) if isinstance(base, str) else base
    values = _validated(base_cls, defaults, context=f"register_variant({name!r})")
    inherited = {f.name: f for f in dataclasses.fields(base_cls)}
    hints = typing.get_type_hints(base_cls)
    namespace: dict[str, Any] = {"__doc__": doc, "__module__": base_cls.__module__, "__annotations__": {}}
    for key, value in values.items():
        namespace["__annotations__"][key] = hints[key]
        namespace[key] = dataclasses.field(default=value, metadata=inherited[key].metadata)
    suffix = name.removeprefix(getattr(base_cls, "name", "")).strip("-_") or name  # "fipo-7b" -> FIPO_7B
    class_name = f"{base_cls.__name__}_{suffix.upper().replace('-', '_')}"
    subclass = type(class_name, (base_cls,), namespace)
    variant: type[RegisteredAlgorithm] = dataclasses.dataclass(frozen=True)(subclass)
    return register_algorithm(name)(variant)


def get_algorithm(name: str, **overrides: Any):
    """An instance of the algorithm registered as `name`, with hyperparameter `overrides`.

    Unknown names list the known ones (and suggest close matches); unknown or ill-typed overrides
    name the field. Ints are accepted for float fields.
    """
    cls = _lookup(name)
    return cls(**_validated(cls, overrides, context=f"algorithm {cls.name!r}"))


def list_algorithms() -> list[str]:
    """Registered names, sorted (built-ins, modules of fipo_bench.algorithms, and entry points)."""
    _discover()
    return sorted(_REGISTRY)


def algorithm_class(name: str) -> type[RegisteredAlgorithm]:
    """The dataclass registered as `name` (for reading its fields and defaults without an instance)."""
    return _lookup(name)


def _lookup(name: str) -> type[RegisteredAlgorithm]:
    _discover()
    key = name.strip().lower() if isinstance(name, str) else name
    if key in _REGISTRY:
        return _REGISTRY[key]
    known = sorted(_REGISTRY)
    close = difflib.get_close_matches(str(key), known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(f"unknown algorithm {name!r}.{hint} Known algorithms: {', '.join(known)}.")


def _discover() -> None:
    """Import every module of fipo_bench.algorithms and every entry point, once."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module("fipo_bench.algorithms")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
        except Exception as error:  # a broken plugin must not hide the working algorithms
            warnings.warn(f"could not load algorithm plugin {entry_point.name!r} ({entry_point.value}): "
                          f"{type(error).__name__}: {error}", stacklevel=2)
            continue
        already_registered = entry_point.name in _REGISTRY or loaded in _REGISTRY.values()
        if isinstance(loaded, type) and not already_registered:
            register_algorithm(entry_point.name)(loaded)


def _validated(cls: type[RegisteredAlgorithm], overrides: dict[str, Any], context: str) -> dict[str, Any]:
    """Check `overrides` against `cls`'s init fields (fipo_bench.coerce, the same rules as the run
    configuration's); returns them converted (ints for float fields), renamed hyperparameters under their
    new names. An unknown key or a value of the wrong type raises an error naming the field; a renamed
    hyperparameter's old name still works, with a warning, for one release."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in overrides.items():
        key = _current_name(cls, key, context)
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{context}: unknown hyperparameter {key!r}.{hint} "
                             f"Known hyperparameters: {', '.join(fields)}.")
        ok, converted = coerce(value, hints[key])
        if not ok:
            raise TypeError(f"{context}: hyperparameter {key!r} expects {describe(hints[key])}, "
                            f"got {type(value).__name__} {value!r}")
        if key in checked:
            raise ValueError(f"{context}: hyperparameter {key!r} is given twice (under its old name too)")
        checked[key] = converted
    return checked


def _current_name(cls: type[RegisteredAlgorithm], key: str, context: str) -> str:
    """`key`, or its new name if it was renamed (Algorithm.renamed_hyperparameters), with a warning."""
    new = getattr(cls, "renamed_hyperparameters", {}).get(key)
    if new is None:
        return key
    warnings.warn(f"{context}: hyperparameter {key!r} is now called {new!r}; the old name will stop "
                  f"working in the next release", FutureWarning, stacklevel=4)
    return new


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
