"""The exit handlers, called in-process on a graph of their own (the subprocess tests in
test_lifecycle.py run them for real at exit and on signals): which node `close_all` closes
first, what it does with a node that fails to close, what `_on_sigterm` does with and without
open nodes, and the warning given when SIGTERM cannot be taken."""

from __future__ import annotations

import signal
import warnings

import pytest

from filters import AggregateFilter
from pipeline.core import lifecycle
from pipeline.core.node import Node
from sinks import MemorySink


class Breaking(MemorySink):
    def on_close(self) -> None:
        raise ValueError("cannot close")


def test_close_all_closes_the_outer_node_first_so_its_last_window_reaches_the_sink(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = MemorySink()
    aggregate = AggregateFilter("x", stats=("mean",))
    aggregate.connect(sink)
    aggregate.write({"x": 1.0})
    aggregate.write({"x": 3.0})
    # the sink was tracked first: closing in tracking order would close it before the window
    monkeypatch.setattr(lifecycle, "_open", {id(sink): sink, id(aggregate): aggregate})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lifecycle.close_all()
    assert sink.records == [{"x_mean": 2.0}]
    assert aggregate.closed and sink.closed


def test_close_all_reports_a_node_that_fails_to_close_and_closes_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken, other, already = Breaking(), MemorySink(), MemorySink()
    already.close()
    monkeypatch.setattr(lifecycle, "_open", {id(n): n for n in (already, broken, other)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lifecycle.close_all()
    assert [(w.category, str(w.message)) for w in caught] == [
        (
            RuntimeWarning,
            "rlpipe: closing MemorySink(0 records) at exit failed: ValueError('cannot close')",
        )
    ]
    assert other.closed and other.flushes == 1
    assert already.flushes == 1  # closed before: not flushed again


def test_sigterm_with_an_open_node_exits_with_128_plus_the_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed, still_open = MemorySink(), MemorySink()
    closed.close()
    monkeypatch.setattr(lifecycle, "_open", {id(closed): closed, id(still_open): still_open})
    with pytest.raises(SystemExit) as caught:
        lifecycle._on_sigterm(signal.SIGTERM, None)
    assert caught.value.code == 128 + signal.SIGTERM == 143


def test_sigterm_with_nothing_open_dies_as_the_default_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = MemorySink()
    closed.close()
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(lifecycle, "_open", {id(closed): closed})
    monkeypatch.setattr(lifecycle.signal, "signal", lambda *a: calls.append(("signal", *a)))
    monkeypatch.setattr(lifecycle.os, "kill", lambda *a: calls.append(("kill", *a)))
    monkeypatch.setattr(lifecycle.os, "getpid", lambda: 4242)
    lifecycle._on_sigterm(signal.SIGTERM, None)
    assert calls == [
        ("signal", signal.SIGTERM, signal.SIG_DFL),
        ("kill", 4242, signal.SIGTERM),
    ]


def test_the_no_sigterm_warning_says_what_to_do_and_is_given_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle, "_warned_no_sigterm", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lifecycle._warn_no_sigterm()
        lifecycle._warn_no_sigterm()
    assert [(w.category, str(w.message)) for w in caught] == [
        (
            RuntimeWarning,
            "rlpipe: rlpipe was first imported off the main thread, so it could not take "
            "SIGTERM (Python lets only the main thread set signal handlers): on SIGTERM, held "
            "rows would be lost. Import rlpipe on the main thread, or call "
            "pipeline.core.lifecycle.take_sigterm() there.",
        )
    ]


def test_close_before_exit_handlers_so_far_moves_the_handler_last_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(lifecycle, "_installed", True)
    monkeypatch.setattr(lifecycle.atexit, "unregister", lambda f: calls.append(("un", f)))
    monkeypatch.setattr(lifecycle.atexit, "register", lambda f: calls.append(("re", f)))
    lifecycle.close_before_exit_handlers_so_far()
    assert calls == [("un", lifecycle.close_all), ("re", lifecycle.close_all)]


def test_a_node_is_forgotten_once_closed_and_forgetting_twice_is_harmless(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node = Node()
    monkeypatch.setattr(lifecycle, "_open", {id(node): node})
    lifecycle.forget(node)
    lifecycle.forget(node)
    assert lifecycle._open == {}
