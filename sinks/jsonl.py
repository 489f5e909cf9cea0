"""JsonlSink: one JSON object per record, one record per line."""

from __future__ import annotations

import json
from typing import Any

from pipeline.core.values import BeyondFloat as _BeyondFloat
from pipeline.core.values import exact_json as _exact_text
from pipeline.core.values import json_number as _number
from pipeline.core.values import jsonable, note_nested_clashes, paired_surrogates, plain
from sinks.file import BufferedFileSink


class JsonlSink(BufferedFileSink):
    """Appends each record to a JSON Lines file as one object, keys in the record's order.

    numpy/jax/torch scalars become JSON numbers, arrays become (nested) lists, nested
    mappings stay objects; a record with no keys is the line `{}`. NaN and infinities are
    written as the `NaN`/`Infinity` literals that Python's `json` and pandas read back
    (strict JSON has no form for them). Any other object is written as its `str()`. Flush
    policy, crash repair, one writer per file: see BufferedFileSink.

    `np.longdouble` values (scalars, 0-d arrays, array elements) are numbers too: the
    float64 nearest to them. One beyond float64's range (`np.longdouble("1e4000")`, which
    float64 would make infinite, or `1e-4000`, zero) is written with all its digits as a
    JSON number, which `json.loads(line, parse_float=decimal.Decimal)` reads back exactly
    (plain `json.loads` reads it as infinity or zero); it is counted in `counts["changed"]`
    and warned about once.

    A text holding a high and a low lone surrogate side by side (`"\\ud800\\udc00"`, two
    characters) is written as JSON's escapes for them, which `json.loads` reads back as one
    character (`"\\U00010000"`): each such key or value is counted in `counts["changed"]`
    and warned about once.

    Keys are written as text. Two keys of one record with the same text (`1` and `"1"`)
    cannot both be JSON keys: the first is written, the later is refused, counted in
    `counts["dropped"]` under its key and warned about once. In a nested mapping the same
    rule keeps the earlier key; the later is counted in `counts["clashed"]` under its text.
    """

    def _as_text(self, value: Any) -> Any:
        clashed: list[str] = []
        out = jsonable(value, clashed)
        note_nested_clashes(self.counts, clashed)
        return out

    def _writable(self, value: Any) -> bool:
        try:
            json.dumps(plain(value), default=_number)
        except _BeyondFloat:
            return True
        except Exception:
            return False
        return True

    def _store(self, rows: list[dict[str, Any]]) -> None:
        dumps = json.dumps
        lines = []
        notes: list[tuple[str, str | None]] = []  # counted once the rows are stored
        clashed: list[str] = []  # nested keys with one text: the later ones
        for row in rows:
            mark = len(clashed)
            line = {str(key): plain(value, clashed) for key, value in row.items()}
            if len(line) < len(row):
                del clashed[mark:]  # noted again by _named
                line = self._named(row, notes, clashed)
            try:
                lines.append(dumps(line, default=_number))
            except _BeyondFloat:
                notes.append(("changed", None))
                lines.append(_exact_text(line))
        lines.append("")
        text = "\n".join(lines)
        # an escaped surrogate: an astral character (read back as written) or lone ones (rare)
        paired = sum(map(paired_surrogates, rows)) if "\\ud" in text else 0
        self._append(text)
        if clashed:
            note_nested_clashes(self.counts, clashed, stacklevel=6)
        if paired:
            self.counts.note(
                "changed",
                "a text holding a high and a low lone surrogate side by side reads back from "
                "JSON as one character (JSON has no form for the two)",
                n=paired,
                category=UserWarning,
                stacklevel=6,
            )
        for reason, key in notes:
            if reason == "changed":
                self.counts.note(
                    "changed",
                    "a longdouble beyond float64's range is written with all its digits as a "
                    "JSON number (json.loads reads it as infinity or zero; "
                    "parse_float=decimal.Decimal reads it exactly)",
                    category=UserWarning,
                    stacklevel=6,
                )
            else:
                self.counts.note(
                    "dropped",
                    f"keys {key!r} of different types would be one JSON key; the first is "
                    "written, the later refused",
                    key=key,
                    category=UserWarning,
                    stacklevel=6,
                )

    @staticmethod
    def _named(
        row: dict[Any, Any], notes: list[tuple[str, str | None]], clashed: list[str]
    ) -> dict[str, Any]:
        """The row with its keys as text; a key whose text an earlier key has is left out
        and noted in `notes`."""
        named: dict[str, Any] = {}
        for key, value in row.items():
            name = str(key)
            if name in named:
                notes.append(("dropped", name))
            else:
                named[name] = plain(value, clashed)
        return named
