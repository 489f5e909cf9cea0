"""Flattening nested mappings into one level of `a/b/c` keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.core.values import text


def flatten(
    record: Mapping[Any, Any],
    sep: str = "/",
    *,
    prefix: str = "",
    collisions: list[str] | None = None,
) -> dict[str, Any]:
    """`record` with nested mappings as one level: `{"a": {"b": 1}}` -> `{"a/b": 1}`.

    Keys keep the record's order and become text (`str(key)`; a key whose `str()` raises,
    its repr: `pipeline.core.values.text`), joined by `sep`. Any other
    value (a list, an array, a string, an empty mapping) is a leaf. When two paths give one
    name (`"a/b"` and `{"a": {"b": ..}}`), the earlier in the record's order is kept and the
    name is appended to `collisions`, if given, for the later value (the rule of
    `pipeline.core.keys.clashes`: nothing is overwritten).
    """
    flat: dict[str, Any] = {}
    stack: list[tuple[str, Any]] = [(prefix, iter(record.items()))]
    while stack:
        path, items = stack[-1]
        for key, value in items:
            try:
                name = f"{path}{key}"
            except Exception:  # a key whose str() raises: named by its repr, never lost
                name = path + text(key)
            if isinstance(value, Mapping) and value:
                stack.append((name + sep, iter(value.items())))
                break
            if name not in flat:
                flat[name] = value
            elif collisions is not None:
                collisions.append(name)
        else:
            stack.pop()
    return flat
