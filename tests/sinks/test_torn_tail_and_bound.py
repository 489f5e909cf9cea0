"""A file sink's last line of defence: `repair_torn_tail` (what a crash left of a last line is
cut off, however long) and the bound on rows held while storage keeps failing."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.isolation import StoreError
from sinks import JsonlSink
from sinks.file import repair_torn_tail
from tests.conftest import FakeClock


@pytest.mark.parametrize(
    ("content", "kept"),
    [
        (b"", b""),
        (b"a\nb\n", b"a\nb\n"),
        (b"a\nbc", b"a\n"),
        (b"abc", b""),  # no complete line at all
        (b"\n" + b"y" * 10, b"\n"),
        (b"x\n" + b"y" * 5000, b"x\n"),  # the last newline is more than one 4 KiB block back
        (b"x\n" + b"y" * 4094, b"x\n"),  # exactly one 4 KiB block
        (b"y" * 9000, b""),
    ],
)
def test_repair_cuts_the_file_after_its_last_newline_and_says_how_much(
    tmp_path: Path, content: bytes, kept: bytes
) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(content)
    assert repair_torn_tail(path) == len(content) - len(kept)
    assert path.read_bytes() == kept


def test_rows_held_while_storage_fails_are_bounded_and_the_oldest_counted_lost(
    tmp_path: Path, clock: FakeClock
) -> None:
    class Down(JsonlSink):
        def _store(self, rows: list[dict[str, Any]]) -> None:
            raise OSError(28, "No space left on device")

    sink = Down(tmp_path / "a.jsonl", flush_every=1, flush_seconds=None, max_pending=3, clock=clock)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(StoreError):
            sink.write({"i": 0})
        for i in range(1, 6):
            sink.write({"i": i})  # within the back-off: held, not stored
    assert sink.lost == 3 and sink.counts["lost"] == 3
    assert [(w.category, str(w.message)) for w in caught] == [
        (
            RuntimeWarning,
            "Down: storage keeps failing and 3 rows are held; the oldest are dropped from now "
            "on (counted in .counts['lost']; warned once)",
        )
    ]
    state = sink.state_dict()
    assert [row["i"] for row in state["nodes"][0]["file"]["held"]] == [3, 4, 5]
    with pytest.raises(StoreError, match="3 rows could not be stored before close; lost"):
        sink.close()
    assert sink.lost == 6


def test_exactly_max_pending_held_rows_lose_nothing(tmp_path: Path, clock: FakeClock) -> None:
    class Down(JsonlSink):
        def _store(self, rows: list[dict[str, Any]]) -> None:
            raise OSError(28, "No space left on device")

    sink = Down(tmp_path / "a.jsonl", flush_every=1, flush_seconds=None, max_pending=3, clock=clock)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(StoreError):
            sink.write({"i": 0})
        sink.write({"i": 1})
        sink.write({"i": 2})
    assert sink.lost == 0
    with pytest.raises(StoreError):
        sink.close()
