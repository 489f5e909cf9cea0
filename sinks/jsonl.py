"""JsonlSink: one JSON object per record, one record per line."""

from __future__ import annotations

import json
from typing import Any

from pipeline.core.values import jsonable, plain
from sinks.file import BufferedFileSink


class JsonlSink(BufferedFileSink):
    """Appends each record to a JSON Lines file as one object, keys in the record's order.

    numpy/jax/torch scalars become JSON numbers, arrays become (nested) lists, nested
    mappings stay objects. NaN and infinities are written as the `NaN`/`Infinity` literals
    that Python's `json` and pandas read back (strict JSON has no form for them). Any other
    object is written as its `str()`. Flush policy and crash repair: see BufferedFileSink.
    """

    def _as_text(self, value: Any) -> Any:
        return jsonable(value)

    def _writable(self, value: Any) -> bool:
        try:
            json.dumps(plain(value), default=str)
        except Exception:
            return False
        return True

    def _store(self, rows: list[dict[str, Any]]) -> None:
        dumps = json.dumps
        self._append(
            "".join(
                dumps({str(key): plain(value) for key, value in row.items()}, default=str) + "\n"
                for row in rows
            )
        )
