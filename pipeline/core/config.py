"""A run's configuration (hyperparameters, seed, settings): its plain JSON form, and the
merge rule of repeated `log_config` calls."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pipeline.core.counts import Counts
from pipeline.core.flatten import flatten
from pipeline.core.values import plain, shown, text

CONFIG_PREFIX = "config/"
"""What a configuration name is counted under in a node's `counts.by_key`: `config/<name>`
(as the tracking sinks count a param they cannot change)."""

_JSON_SCALARS = (str, bool, int, float, type(None))


def convert_json(value: Any) -> Any:
    """`value` in a form `json.dumps` takes, by Spinning Up's `convert_json` rule:

    - JSON's own values (text, numbers, bools, None) stay as they are; numpy/jax/torch
      scalars and arrays first become Python numbers and lists (`plain`);
    - mappings keep their entries (keys as text), lists and tuples their elements, each
      converted by this rule;
    - an object with a `__name__` (a function, a class, a module), unless it is a lambda,
      becomes its name;
    - an object with attributes (a non-empty `__dict__`) becomes `{str(obj): {attribute:
      value}}`, its values converted by this rule (an object met again inside itself
      becomes its text);
    - anything else becomes its text (`str`).
    """
    return _convert(value, set())


def _convert(value: Any, seen: set[int]) -> Any:
    if getattr(value, "dtype", None) is not None:
        value = plain(value)
    if isinstance(value, _JSON_SCALARS):
        if isinstance(value, int) and not isinstance(value, bool):
            return value if _printable(value) else text(value)
        return value
    if id(value) in seen:  # a cycle: the rule would never end
        return text(value)
    seen = seen | {id(value)}
    if isinstance(value, Mapping):
        return {_key(key): _convert(item, seen) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_convert(item, seen) for item in value]
    name = getattr(value, "__name__", None)
    if isinstance(name, str) and "lambda" not in name:
        return name
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, Mapping) and attributes:
        return {text(value): {_key(key): _convert(item, seen) for key, item in attributes.items()}}
    return text(value)


def _printable(value: int) -> bool:
    try:
        str(value)
    except ValueError:  # beyond Python's int-to-text digit limit
        return False
    return True


def _key(key: Any) -> str:
    return key if isinstance(key, str) else text(convert_json(key))


def config_values(config: Mapping[Any, Any]) -> tuple[dict[str, Any], list[str]]:
    """A configuration as one level of `/`-joined names (`{"opt": {"lr": 0.1}}` ->
    `{"opt/lr": 0.1}`, `pipeline.core.flatten`) with every value by `convert_json`; and the
    names two paths both gave (the earlier kept, as `flatten` keeps it)."""
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a mapping, got {type(config).__name__}")
    twice: list[str] = []
    flat = flatten(config, collisions=twice)
    return {name: convert_json(value) for name, value in flat.items()}, twice


def same_value(old: Any, new: Any) -> bool:
    """Whether two converted configuration values are one (NaN equals NaN; `1`, `1.0` and
    `True` differ)."""
    if type(old) is not type(new):
        return False
    if isinstance(old, float) and math.isnan(old):
        return math.isnan(new)
    try:
        return bool(old == new) and json.dumps(old) == json.dumps(new)
    except (TypeError, ValueError):
        return bool(old == new)


def merge_config(
    held: dict[str, Any], config: Mapping[Any, Any], counts: Counts, *, stacklevel: int = 5
) -> dict[str, Any]:
    """Merges `config` (see `config_values`) into the configuration `held` (changed in
    place); returns the entries that are new or changed.

    The rule every sink that keeps a configuration follows: a name given again with the
    same value changes nothing (a resumed run logs its configuration again); one given with
    another value takes it, and the change is counted in `counts["overwritten"]` under
    `config/<name>` and warned once per name; so is a name two paths of one configuration
    both gave (`"a/b"` and `{"a": {"b": ...}}`; the earlier is kept)."""
    values, twice = config_values(config)
    for name in twice:
        counts.note(
            "overwritten",
            f"config name {name!r} is given twice (nested and '/'-joined); the earlier is kept",
            key=CONFIG_PREFIX + name,
            category=UserWarning,
            stacklevel=stacklevel + 1,
        )
    changed: dict[str, Any] = {}
    for name, value in values.items():
        if name in held:
            old = held[name]
            if same_value(old, value):
                continue
            counts.note(
                "overwritten",
                f"config value {name!r} changed from {shown(old)} to {shown(value)}; the "
                "later is kept",
                key=CONFIG_PREFIX + name,
                category=UserWarning,
                stacklevel=stacklevel + 1,
            )
        held[name] = changed[name] = value
    return changed


def config_text(values: Mapping[str, Any]) -> str:
    """The JSON text of a configuration file: an object of the names and values, indented,
    NaN and infinities as the `NaN`/`Infinity` literals that `json.loads` reads."""
    return json.dumps(dict(values), indent=2, ensure_ascii=False) + "\n"
