"""RemoteSink's contract, on small real subclasses: a client that keeps what it is sent in a
list (or a file, for the exit tests), and can be told to fail."""

from __future__ import annotations

import atexit
import json
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.core.isolation import StoreError
from pipeline.core.node import ClosedError, Record
from sinks.remote import RemoteSink

REPO = Path(__file__).resolve().parents[2]


class ListClient:
    """A tracking client that keeps every row it is sent; fails while `failing` (or for its
    first `fail_first` sends), and notes the thread of each call."""

    def __init__(self, *, fail_first: int = 0, delay: float = 0.0) -> None:
        self.rows: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.threads: list[threading.Thread] = []
        self.failing = False
        self.fail_first = fail_first
        self.delay = delay

    def log(self, rows: list[dict[str, Any]]) -> None:
        self.threads.append(threading.current_thread())
        time.sleep(self.delay)
        if self.failing or self.fail_first > 0:
            self.fail_first -= 1
            self.calls.append("failed")
            raise ConnectionError("service unavailable")
        self.calls.append("send")
        self.rows.extend(rows)


class ListSink(RemoteSink[dict[str, Any]]):
    """The smallest RemoteSink: rows are copies of the records, sent to a ListClient."""

    def __init__(self, client: ListClient) -> None:
        super().__init__()
        self.client = client
        self._close_at_exit()

    def _row(self, data: Record) -> dict[str, Any]:
        return dict(data)

    def _send(self, rows: list[dict[str, Any]]) -> None:
        self.client.log(rows)

    def _flush_client(self) -> None:
        self.client.calls.append("flush")

    def _close_client(self) -> None:
        self.client.calls.append("close")


def make_sink(client: ListClient | None = None, **attributes: Any) -> ListSink:
    sink = ListSink(client or ListClient())
    sink.push_seconds = 3600.0  # no timed push unless a test asks for one
    for name, value in attributes.items():
        setattr(sink, name, value)
    return sink


def records(n: int, start: int = 0) -> list[dict[str, int]]:
    return [{"i": i} for i in range(start, start + n)]


def wait_for(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Waits (bounded, generously: the push thread may be slow to run on a busy machine)
    until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# -- write, flush, close ------------------------------------------------------------------


def test_write_holds_rows_and_never_calls_the_client() -> None:
    client = ListClient(delay=0.002)  # a slow client: write must still not call it
    sink = make_sink(client, max_buffered=5)
    for record in records(50):
        sink.write(record)
        assert threading.main_thread() not in client.threads
    assert client.calls and set(client.calls) == {"send"}  # the thread pushed, past 5 held
    sink.close()
    assert client.rows == records(50)
    assert sink.counts["lost"] == 0


def test_rows_wait_for_the_timed_push_or_a_flush() -> None:
    client = ListClient()
    sink = make_sink(client)
    sink.write({"i": 0})
    sink.write({"i": 1})
    assert sink.pending == 2 and client.rows == []
    sink.flush()
    assert sink.pending == 0 and client.rows == records(2)
    assert client.calls == ["send", "flush"]
    sink.close()


def test_the_thread_pushes_every_push_seconds() -> None:
    client = ListClient()
    sink = make_sink(client, push_seconds=0.01)
    sink.write({"i": 0})
    wait_for(lambda: client.rows == records(1))
    assert client.threads[0] is not threading.main_thread()
    sink.close()


def test_close_drains_then_closes_the_client_once() -> None:
    client = ListClient()
    sink = make_sink(client)
    for record in records(3):
        sink.write(record)
    sink.close()
    sink.close()
    assert client.rows == records(3)
    assert client.calls == ["send", "flush", "close"]
    with pytest.raises(ClosedError):
        sink.write({"i": 3})


# -- failures -----------------------------------------------------------------------------


def test_a_failing_push_keeps_its_rows_and_flush_retries_them_once_each() -> None:
    client = ListClient()
    client.failing = True
    sink = make_sink(client)
    for record in records(3):
        sink.write(record)
    with pytest.warns(RuntimeWarning, match="pushing to the client failed") as caught:
        with pytest.raises(StoreError, match="3 rows are kept"):
            sink.flush()
        for record in records(2, start=3):
            sink.write(record)
        with pytest.raises(StoreError, match="5 rows are kept"):
            sink.flush()
    assert len(caught) == 1  # warned once, counted twice
    assert sink.counts["errors"] == 2 and sink.pending == 5

    client.failing = False
    sink.flush()
    assert client.rows == records(5)  # in order, none lost, none twice
    assert sink.counts["lost"] == 0
    sink.close()


def test_the_thread_retries_a_failing_push_with_no_loss_and_no_duplicate() -> None:
    client = ListClient(fail_first=3)
    sink = make_sink(client, push_seconds=0.005, max_retry_seconds=0.02)
    with pytest.warns(RuntimeWarning, match="ConnectionError: service unavailable"):
        for record in records(20):
            sink.write(record)  # never raises, though the client is failing
            time.sleep(0.001)
        wait_for(lambda: len(client.rows) == 20)
    assert client.rows == records(20)
    assert client.calls[:3] == ["failed"] * 3
    assert sink.counts["errors"] == 3 and sink.counts["lost"] == 0
    sink.close()
    assert client.rows == records(20)


def test_beyond_max_buffered_a_failing_client_loses_the_oldest_counted_and_warned_once() -> None:
    client = ListClient()
    client.failing = True
    sink = make_sink(client, max_buffered=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for record in records(10):
            sink.write(record)  # never waits long, never raises
        wait_for(lambda: sink.pending == 3 and sink.counts["lost"] == 7)
    lost_warnings = [w for w in caught if "the oldest are dropped" in str(w.message)]
    assert len(lost_warnings) == 1
    assert "counted in .counts['lost']" in str(lost_warnings[0].message)

    client.failing = False
    sink.flush()
    assert client.rows == records(3, start=7)  # the newest rows were kept
    sink.close()


def test_once_a_flush_got_through_write_is_not_held_up_by_the_threads_back_off() -> None:
    client = ListClient()
    client.failing = True
    # push_seconds and max_retry_seconds 3600: the thread's back-off is an hour
    sink = make_sink(client, max_buffered=2, max_retry_seconds=3600.0)
    with pytest.warns(RuntimeWarning):
        for record in records(3):
            sink.write(record)  # the thread's push fails: it backs off
        wait_for(lambda: client.calls == ["failed"])
    client.failing = False
    sink.flush()

    def write_past_max_buffered() -> None:
        for record in records(3, start=3):
            sink.write(record)  # past max_buffered: the thread pushes now, not in an hour

    writer = threading.Thread(target=write_past_max_buffered, daemon=True)
    writer.start()
    writer.join(timeout=120.0)  # an hour if held up by the back-off; far less on a busy machine
    assert not writer.is_alive(), "write waited for the push thread's back-off"
    sink.close()
    assert client.rows == records(5, start=1)  # row 0 did not fit beside rows 1 and 2
    assert sink.counts["lost"] == 1


def test_close_with_a_failing_client_counts_the_rows_lost_and_still_closes_it() -> None:
    client = ListClient()
    client.failing = True
    sink = make_sink(client)
    sink.write({"i": 0})
    sink.write({"i": 1})
    with pytest.warns(RuntimeWarning), pytest.raises(StoreError, match="2 rows could not be"):
        sink.close()
    assert sink.counts["lost"] == 2
    assert client.calls.count("close") == 1 and client.calls[-1] == "close"
    assert sink.closed


# -- interruptions: Ctrl-C, SIGTERM ------------------------------------------------------


class InterruptedClient(ListClient):
    """A ListClient whose next `log` calls first run `interrupt()` (each call takes one)."""

    def __init__(self, *interrupts: Callable[[], None]) -> None:
        super().__init__()
        self.interrupts = list(interrupts)

    def log(self, rows: list[dict[str, Any]]) -> None:
        if self.interrupts:
            self.interrupts.pop(0)()
        super().log(rows)


def raise_(error: BaseException) -> Callable[[], None]:
    def interrupt() -> None:
        raise error

    return interrupt


@pytest.fixture
def python_ctrl_c() -> Iterator[None]:
    """SIGINT handled by Python's own handler (KeyboardInterrupt), whatever a framework
    imported earlier in this process set."""
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, saved)


def ctrl_c(times: int) -> Callable[[], None]:
    def interrupt() -> None:
        for _ in range(times):
            signal.raise_signal(signal.SIGINT)  # Python's handler: KeyboardInterrupt
            time.sleep(0.01)  # time for the handler to run, inside the push

    return interrupt


@pytest.mark.parametrize("error", [KeyboardInterrupt(), SystemExit(143)], ids=type)
def test_a_push_that_raises_an_interruption_holds_its_rows_for_the_close(
    error: BaseException,
) -> None:
    client = InterruptedClient(raise_(error))
    sink = make_sink(client)
    for record in records(3):
        sink.write(record)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an interruption is not a failure: no warning
        with pytest.raises(type(error)):
            sink.flush()
    assert sink.pending == 3 and client.rows == []
    assert sink.counts["errors"] == 0
    sink.write({"i": 3})
    sink.close()
    assert client.rows == records(4)  # in order, once each
    assert sink.counts["lost"] == 0


@pytest.mark.usefixtures("python_ctrl_c")
def test_ctrl_c_during_a_push_stops_the_program_once_the_push_is_over() -> None:
    client = InterruptedClient(ctrl_c(times=1))
    sink = make_sink(client)
    for record in records(3):
        sink.write(record)
    with pytest.raises(KeyboardInterrupt):
        sink.flush()
    assert client.rows == records(3) and sink.pending == 0  # the push went through whole
    assert client.calls == ["send"]  # the flush stopped before the client's own flush
    sink.close()
    assert client.rows == records(3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.usefixtures("python_ctrl_c")
def test_a_second_ctrl_c_interrupts_a_push_at_once_and_its_rows_are_held_again() -> None:
    client = InterruptedClient(ctrl_c(times=2))  # a push that hangs: the user insists
    sink = make_sink(client)
    for record in records(3):
        sink.write(record)
    with pytest.raises(KeyboardInterrupt):
        sink.flush()
    assert client.rows == [] and sink.pending == 3
    sink.close()
    assert client.rows == records(3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# -- exit -----------------------------------------------------------------------------------


class FileClient:
    """A client that appends what it is sent to a file as JSON lines and, like Neptune's,
    stops itself from an exit handler registered when it is made."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stopped = False
        atexit.register(self.stop)

    def note(self, entry: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(entry) + "\n")

    def stop(self) -> None:
        self.note("stopped")
        self.stopped = True


class FileSink(RemoteSink[dict[str, Any]]):
    """A RemoteSink on a FileClient; what reaches the client after it stopped is marked."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.client = FileClient(path)
        self._close_at_exit()

    def _row(self, data: Record) -> dict[str, Any]:
        return dict(data)

    def _send(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.client.note({"after stop": row} if self.client.stopped else row)

    def _close_client(self) -> None:
        self.client.note("closed")


LEFT_OPEN = """
import sys, time
from pipeline import Pipeline
from sinks import MemorySink
from tests.sinks.test_remote import FileSink
path, how = sys.argv[1:]
# A pipeline made first: rlpipe's exit handler is registered before the client's.
early = Pipeline("early").to(MemorySink())
sink = FileSink(path)
sink.push_seconds = 3600.0
for i in range(5):
    sink.write({"i": i})
if how == "closed":
    sink.close()
print("ready", flush=True)
if how == "SIGTERM":
    time.sleep(60)
"""


@pytest.mark.parametrize("how", ["exit", "SIGTERM", "closed"])
def test_a_sink_left_open_is_closed_at_exit_and_on_sigterm_before_its_client_stops(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "client.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-c", LEFT_OPEN, str(path), how],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready", child.stderr and child.stderr.read()
    if how == "SIGTERM":
        child.send_signal(signal.SIGTERM)
    _, errors = child.communicate(timeout=120)
    assert child.returncode == (128 + signal.SIGTERM if how == "SIGTERM" else 0), errors
    assert "Warning" not in errors
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert entries == [*records(5), "closed", "stopped"]


def test_the_base_is_importable_from_sinks() -> None:
    import sinks
    from sinks import remote

    assert sinks.RemoteSink is remote.RemoteSink
