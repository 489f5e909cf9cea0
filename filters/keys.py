"""Key filters: keep, drop, prefix, rename and flatten metric names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.core.columns import Columns, batch_length
from pipeline.core.flatten import flatten
from pipeline.core.fusion import Transform
from pipeline.core.keys import CACHE_LIMIT, KeyMatcher
from pipeline.core.node import Node, Record


def _emit_columns(node: Node, columns: Columns, length: int) -> None:
    """Sends on a batch of `length` rows; with no columns left, `length` empty records."""
    if columns:
        node.emit_batch(columns)
    else:
        for _ in range(length):
            node.emit({})


class KeepKeys(Transform):
    """Passes on only the keys matching `regex` (`re.search`); the others are dropped by design."""

    def __init__(self, regex: str) -> None:
        super().__init__()
        self.match = KeyMatcher(regex)

    drops = False

    def transform(self, data: Record) -> Record:
        match = self.match
        return {key: value for key, value in data.items() if match(key)}

    def write_batch(self, columns: Columns) -> None:
        length = batch_length(columns)
        if length:
            match = self.match
            kept = {key: column for key, column in columns.items() if match(key)}
            _emit_columns(self, kept, length)

    def __repr__(self) -> str:
        return f"KeepKeys({self.match.regex!r})"


class DropKeys(Transform):
    """Removes the keys matching `regex` (`re.search`); a record without any passes as it is."""

    def __init__(self, regex: str) -> None:
        super().__init__()
        self.match = KeyMatcher(regex)

    drops = False

    def transform(self, data: Record) -> Record:
        match = self.match
        for key in data:
            if match(key):
                return {k: v for k, v in data.items() if not match(k)}
        return data

    def write_batch(self, columns: Columns) -> None:
        length = batch_length(columns)
        if length:
            match = self.match
            kept = {key: column for key, column in columns.items() if not match(key)}
            _emit_columns(self, kept, length)

    def __repr__(self) -> str:
        return f"DropKeys({self.match.regex!r})"


class PrefixKeys(Transform):
    """Renames every key to `<prefix><sep><key>`, e.g. `train/episode_return`."""

    def __init__(self, prefix: str, sep: str = "/") -> None:
        super().__init__()
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty string, got {prefix!r}")
        self.prefix = prefix
        self.sep = sep
        self._names: dict[str, str] = {}

    drops = False

    def transform(self, data: Record) -> Record:
        names = self._names
        out = {}
        for key, value in data.items():
            name = names.get(key)
            if name is None:
                if len(names) >= CACHE_LIMIT:
                    names.clear()
                name = names[key] = f"{self.prefix}{self.sep}{key}"
            out[name] = value
        return out

    def write_batch(self, columns: Columns) -> None:
        if batch_length(columns):
            names = self._names
            out = {}
            for key, column in columns.items():
                name = names.get(key)
                if name is None:
                    if len(names) >= CACHE_LIMIT:
                        names.clear()
                    name = names[key] = f"{self.prefix}{self.sep}{key}"
                out[name] = column
            self.emit_batch(out)

    def __repr__(self) -> str:
        return f"PrefixKeys({self.prefix!r})"


class RenameKeys(Transform):
    """Renames the keys named in `mapping`; other keys pass unchanged.

    If two keys end up with the same name, the one later in the record wins; the overwrite is
    counted in `counts["overwritten"]` and warned about once per name."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        super().__init__()
        if not isinstance(mapping, Mapping) or not all(
            isinstance(new, str) for new in mapping.values()
        ):
            raise ValueError("mapping must map old key names to new key names (strings)")
        self.mapping = dict(mapping)

    drops = False

    def transform(self, data: Record) -> Record:
        mapping = self.mapping
        out: dict[str, Any] = {}
        for key, value in data.items():
            name = mapping.get(key, key)
            if name in out:
                _overwritten(self, name)
            out[name] = value
        return out

    def write_batch(self, columns: Columns) -> None:
        length = batch_length(columns)
        if length:
            mapping = self.mapping
            out: dict[str, Any] = {}
            for key, column in columns.items():
                name = mapping.get(key, key)
                if name in out:
                    _overwritten(self, name, length)
                out[name] = column
            self.emit_batch(out)

    @property
    def overwritten(self) -> int:
        """Values overwritten by a later value of the same name (`counts["overwritten"]`)."""
        return self.counts["overwritten"]

    def __repr__(self) -> str:
        return f"RenameKeys({self.mapping!r})"


class FlattenFilter(Transform):
    """Flattens nested mappings to `a/b/c` keys (any `sep`; see `pipeline.core.flatten`);
    other values are leaves, lists and arrays included. A record without nested mappings
    passes as it is.

    When a flattened name equals an existing key, the value met earlier in the record is
    kept; the later is counted in `counts["overwritten"]` and warned about once per name."""

    def __init__(self, sep: str = "/") -> None:
        super().__init__()
        if not isinstance(sep, str) or not sep:
            raise ValueError(f"sep must be a non-empty string, got {sep!r}")
        self.sep = sep

    drops = False

    def transform(self, data: Record) -> Record:
        for value in data.values():
            if isinstance(value, Mapping):
                collisions: list[str] = []
                out = flatten(data, self.sep, collisions=collisions)
                for name in collisions:
                    _overwritten(self, name, earlier_kept=True)
                return out
        return data

    def write_batch(self, columns: Columns) -> None:
        """A batch without nested mappings passes as it is; one with them goes row by row."""
        length = batch_length(columns)
        if not length:
            return
        for column in columns.values():
            if getattr(column, "dtype", None) is not None and column.dtype.kind != "O":
                continue
            if any(isinstance(value, Mapping) for value in column):
                super().write_batch(columns)
                return
        self.emit_batch(columns)

    @property
    def overwritten(self) -> int:
        """Values not written for an earlier one of the same name (`counts["overwritten"]`)."""
        return self.counts["overwritten"]

    def __repr__(self) -> str:
        return f"FlattenFilter({self.sep!r})"


def _overwritten(node: Node, name: str, count: int = 1, *, earlier_kept: bool = False) -> None:
    node.counts.note(
        "overwritten",
        f"two values under {name!r}: the earlier is kept, the later is not written"
        if earlier_kept
        else f"a value under {name!r} overwrites an earlier one of the same name; the later wins",
        key=name,
        n=count,
        category=UserWarning,
        stacklevel=4,
    )
