"""BufferedFileSink's flush policy under a clock the test moves: batches flush at the row
counts and instants rows would, the back-off after a failed store holds batches too, a store
that fails part-way keeps exactly the rows not stored, and a restored sink keeps its file
position, counters and the age of its held rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.isolation import StoreError
from sinks import JsonlSink
from tests.conftest import FakeClock


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class Unreliable(JsonlSink):
    """A JSONL sink whose storage is down while `down` is set."""

    down = False

    def _store(self, rows: list[dict[str, Any]]) -> None:
        if self.down:
            raise OSError(28, "No space left on device")
        super()._store(rows)


def test_a_batch_flushes_at_the_row_counts_of_row_by_row(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    sink = JsonlSink(path, flush_every=3, flush_seconds=None)
    sink.write({"i": 0})
    sink.write({"i": 1})
    sink.write_batch({"i": [2, 3, 4, 5, 6]})
    assert [r["i"] for r in lines(path)] == [0, 1, 2, 3, 4, 5]  # row 6 is held
    assert sink.rows_written == 6
    sink.close()
    assert [r["i"] for r in lines(path)] == list(range(7))


def test_a_batch_is_held_until_flush_seconds_passed_since_the_oldest_held_row(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "a.jsonl"
    sink = JsonlSink(path, flush_every=1000, flush_seconds=10.0, clock=clock)
    sink.write_batch({"i": [0, 1]})
    clock.advance(9.5)
    sink.write_batch({"i": [2]})
    assert path.read_text() == "" and sink.flush_due() == pytest.approx(0.5)
    clock.advance(0.5)  # exactly flush_seconds after the first row
    sink.write_batch({"i": [3]})
    assert [r["i"] for r in lines(path)] == [0, 1, 2, 3]
    assert sink.flush_due() is None
    sink.close()


def test_after_a_failed_store_batches_are_held_until_the_back_off_ends(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "a.jsonl"
    sink = Unreliable(path, flush_every=2, flush_seconds=None, clock=clock)
    sink.down = True
    sink.write({"i": 0})
    with pytest.raises(StoreError, match=r"could not store 2 rows \(OSError: .*No space left"):
        sink.write({"i": 1})
    sink.down = False
    sink.write_batch({"i": [2, 3]})  # within the 1 s back-off: held, not stored
    assert path.read_text() == ""
    clock.advance(1.0)  # the back-off is over
    sink.write_batch({"i": [4, 5]})
    assert [r["i"] for r in lines(path)] == [0, 1, 2, 3, 4]  # as row by row: 5 is held
    sink.close()
    assert [r["i"] for r in lines(path)] == [0, 1, 2, 3, 4, 5]


def test_a_store_that_fails_part_way_keeps_exactly_the_rows_not_stored(tmp_path: Path) -> None:
    class Fragile(Unreliable):
        def _store(self, rows: list[dict[str, Any]]) -> None:
            if len(rows) > 1 and any(row["bad"] for row in rows):
                raise TypeError("a value this sink cannot write in a group")  # row by row
            if self.down and rows[0]["i"] >= 2:
                raise OSError(28, "No space left on device")
            JsonlSink._store(self, rows)

    path = tmp_path / "a.jsonl"
    sink = Fragile(path, flush_every=100, flush_seconds=None)
    for i in range(4):
        sink.write({"i": i, "bad": i == 1})
    sink.down = True
    with pytest.raises(StoreError) as caught:
        sink.flush()
    assert str(caught.value) == (
        f"Fragile({str(path)!r}) could not store 2 rows (OSError: [Errno 28] No space left on "
        "device); they are kept and retried"
    )
    assert sink.rows_written == 2 and [r["i"] for r in lines(path)] == [0, 1]
    sink.down = False
    sink.flush()
    assert sink.rows_written == 4 and [r["i"] for r in lines(path)] == [0, 1, 2, 3]
    sink.close()


def test_a_restored_sink_cuts_the_file_back_and_keeps_counters_and_held_rows_age(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "a.jsonl"
    sink = JsonlSink(path, flush_every=2, flush_seconds=10.0, clock=clock)
    for i in range(3):
        sink.write({"i": i})  # rows 0 and 1 stored, row 2 held
    clock.advance(3.0)
    state = sink.state_dict()
    for i in range(3, 7):
        sink.write({"i": i})
    sink.close()
    assert len(lines(path)) == 7

    restored = JsonlSink(path, flush_every=2, flush_seconds=10.0, clock=clock)
    restored.load_state_dict(state)
    assert [r["i"] for r in lines(path)] == [0, 1]
    assert restored.rows_written == 2
    assert restored.flush_due() == pytest.approx(7.0)  # held 3 s of its 10 s already
    restored.close()
    assert [r["i"] for r in lines(path)] == [0, 1, 2]


def test_a_state_of_a_longer_file_is_refused_naming_the_sizes(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with JsonlSink(path) as sink:
        sink.write({"i": 0})
        sink.flush()
        state = sink.state_dict()
    size = path.stat().st_size
    path.write_text("")
    restored = JsonlSink(path)
    with pytest.raises(ValueError) as caught:
        restored.load_state_dict(state)
    assert str(caught.value) == (
        f"{path} holds 0 bytes, fewer than the {size} it held at the checkpoint: it is not "
        "the file this state was taken from"
    )
    restored.close()
