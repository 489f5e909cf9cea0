"""TerminalSink: records printed for humans, one line each (Acme style) or as tables (SB3 style)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from pipeline.core.config import merge_config
from pipeline.core.keys import CACHE_LIMIT
from pipeline.core.node import Record
from pipeline.core.values import plain
from sinks.base import Sink


def format_value(value: Any, precision: int = 3) -> str:
    """A short human form: ints as they are, floats with `precision` decimals (scientific
    notation when very large or small), NaN/inf spelled out, arrays and lists shortened."""
    value = plain(value)
    if isinstance(value, int):  # bool included
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        magnitude = abs(value)
        if magnitude >= 1e6 or (0 < magnitude < 10.0 ** -precision):
            return f"{value:.{precision}e}"
        return f"{value:.{precision}f}"
    if isinstance(value, list):
        text = "[" + ", ".join(format_value(v, precision) for v in value[:6])
        return text + (", ...]" if len(value) > 6 else "]")
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _exact(value: Any) -> str:
    """A configuration value in full: text as it is, anything else as its JSON text."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def humanize(key: str) -> str:
    """`episode_return` -> `Episode Return`, as Acme's terminal logger shows keys."""
    return key.replace("_", " ").title()


class TerminalSink(Sink):
    """Prints each record to a text stream (stdout by default, looked up at each write).

    `mode="line"`: `[Label] Episode Length = 100 | Episode Return = 12.500`, keys sorted by
    name so the order is stable whatever order they came in (`humanize_keys=False` prints
    them as written). `mode="table"`: a boxed two-column table per record, keys grouped by
    their `prefix/` as Stable-Baselines3 prints them. Every key of a record is printed; a
    record with no keys prints its label alone (an empty table in table mode).

    `log_config(config)` prints the run's configuration once, with exact values
    (`[Label] config: lr = 0.0003 | seed = 1`, or a table under `config/`); a later call
    prints only the names that are new or changed (see `pipeline.core.config.merge_config`).
    """

    def __init__(
        self,
        label: str = "",
        *,
        stream: TextIO | None = None,
        mode: str = "line",
        precision: int = 3,
        humanize_keys: bool = True,
    ) -> None:
        super().__init__()
        if mode not in ("line", "table"):
            raise ValueError(f"mode must be 'line' or 'table', got {mode!r}")
        if isinstance(precision, bool) or not isinstance(precision, int) or precision < 0:
            raise ValueError(f"precision must be an int >= 0, got {precision!r}")
        self.label = label
        self.stream = stream
        self.mode = mode
        self.precision = precision
        self.humanize_keys = humanize_keys
        self._prefix = f"[{humanize(label) if humanize_keys else label}] " if label else ""
        self._layouts: dict[tuple[Any, ...], tuple[tuple[Any, str], ...]] = {}
        self.config: dict[str, Any] = {}

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Prints the configuration's new or changed entries (nothing if there are none)."""
        if self.closed:
            self._check_open()
        changed = merge_config(self.config, config, self.counts)
        if not changed:
            return
        shown = {name: _exact(value) for name, value in changed.items()}
        if self.mode == "line":
            text = self._prefix + "config: " + " | ".join(
                f"{name} = {value}" for name, value in shown.items()
            )
        else:
            text = self._table([(f"config/{name}", value) for name, value in shown.items()])
        stream = self.stream or sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def write(self, data: Record) -> None:
        if self.closed:
            self._check_open()
        stream = self.stream or sys.stdout
        text = self.format_line(data) if self.mode == "line" else self.format_table(data)
        stream.write(text + "\n")
        stream.flush()

    def format_line(self, data: Record) -> str:
        """The one-line form of a record."""
        keys = tuple(data)
        layout = self._layouts.get(keys)
        if layout is None:  # the sorted keys and their names, once per key set
            if len(self._layouts) >= CACHE_LIMIT:
                self._layouts.clear()
            name = humanize if self.humanize_keys else str
            order = sorted(data, key=str)
            layout = self._layouts[keys] = tuple((key, f"{name(str(key))} = ") for key in order)
        precision = self.precision
        return self._prefix + " | ".join(
            shown + format_value(data[key], precision) for key, shown in layout
        )

    def format_table(self, data: Record) -> str:
        """The boxed table form of a record."""
        return self._table(
            [(str(key), format_value(data[key], self.precision)) for key in sorted(data, key=str)]
        )

    def _table(self, entries: list[tuple[str, str]]) -> str:
        rows: list[tuple[str, str]] = []
        group = None
        for text, value in entries:
            head, sep, tail = text.rpartition("/")
            if sep:
                if head != group:
                    rows.append((head + "/", ""))
                    group = head
                text = "    " + tail
            else:
                group = None
            rows.append((text, value))
        if self.label:
            rows.insert(0, (f"[{self.label}]", ""))
        key_width = max((len(k) for k, _ in rows), default=0)
        value_width = max((len(v) for _, v in rows), default=0)
        rule = "-" * (key_width + value_width + 7)
        body = [f"| {k:<{key_width}} | {v:<{value_width}} |" for k, v in rows]
        return "\n".join([rule, *body, rule])

    def __repr__(self) -> str:
        return f"TerminalSink({self.label!r})"
