"""Whether a value read from JSON or a command line fits a dataclass field's type annotation, and the
value converted to it: the one type check behind RunConfig (config.py) and algorithm hyperparameters
(registry.py), so `--set lr=1` and `--set fipo.half_life=16` follow the same rules.

The rules: an int is a float (JSON writes 16.0 as 16) but a bool is neither an int nor a float; a
JSON list is a tuple; a `Literal` takes only its listed values; a dict is checked as a dict only (its
values are checked where they are used); an annotation none of these covers (e.g. Any) takes anything.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any


def parse_value(text: str) -> Any:
    """A value written as text (`--set`, an rg: option of an unannotated field): JSON when it parses
    (numbers, true/false, null, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def coerce(value: Any, annotation: Any) -> tuple[bool, Any]:
    """(value fits annotation, value converted): `annotation` as typing.get_type_hints returns it."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            ok, converted = coerce(value, option)
            if ok:
                return True, converted
        return False, value
    if origin is typing.Literal:
        return value in typing.get_args(annotation), value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        args = typing.get_args(annotation)
        item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(item_types) != len(value):
            return False, value
        items = [coerce(item, item_type) for item, item_type in zip(value, item_types, strict=True)]
        return all(ok for ok, _ in items), tuple(converted for _, converted in items)
    if origin is dict:
        return isinstance(value, dict), value
    if annotation is type(None):
        return value is None, value
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if isinstance(annotation, type):
        return isinstance(value, annotation), value
    return True, value


def describe(annotation: Any) -> str:
    """What a field of this annotation expects, in the words of a JSON or command-line user."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(option) for option in typing.get_args(annotation))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation))
    if origin is tuple or annotation is tuple:
        item_types = typing.get_args(annotation)
        if len(item_types) == 2 and item_types[1] is Ellipsis:
            return f"a list of {_plural(describe(item_types[0]))}"
        return "a list"
    if origin is dict or annotation is dict:
        return "an object"
    names = {type(None): "null", float: "a number", int: "an integer", bool: "true or false", str: "a string"}
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _plural(description: str) -> str:
    """ "an integer" -> "integers", "a string" -> "strings" (item types of a list)."""
    for article in ("an ", "a "):
        if description.startswith(article):
            return description.removeprefix(article) + "s"
    return description
