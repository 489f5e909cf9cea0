"""progress(): a tqdm bar on a terminal, nothing extra anywhere else."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import termios
from collections.abc import Iterator

import pytest

from pipeline.cli.progress import is_terminal, progress


@pytest.fixture
def terminal() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """A real pseudo-terminal: (the stream a program writes to, the fd the screen reads)."""
    screen, program = pty.openpty()
    fcntl.ioctl(program, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24 x 100
    stream = open(program, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
    os.set_blocking(screen, False)
    try:
        yield stream, screen
    finally:
        stream.close()
        os.close(screen)


def shown(screen: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(screen, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_off_a_terminal_items_pass_through_and_nothing_is_written() -> None:
    stream = io.StringIO()
    bar = progress(["a", "b", "c"], "train", stream=stream)
    assert not bar.enabled and bar.bar is None
    assert list(bar) == ["a", "b", "c"]
    bar.update(5)
    bar.set_postfix(ret=1.5)
    bar.set_description("other")
    bar.close()
    assert stream.getvalue() == ""


def test_a_count_iterates_over_its_range() -> None:
    assert list(progress(4, stream=io.StringIO())) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=">= 0"):
        progress(-1)


def test_write_prints_plainly_without_a_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with progress(total=10, description="x", stream=io.StringIO()) as bar:
        bar.write("evaluation: 42.0")
    assert capsys.readouterr().out == "evaluation: 42.0\n"


def test_on_a_terminal_a_bar_is_drawn(terminal: tuple[io.TextIOWrapper, int]) -> None:
    stream, screen = terminal
    assert is_terminal(stream)
    items = list(progress(range(3), "train", unit="ep", stream=stream, mininterval=0))
    assert items == [0, 1, 2]
    screen_text = shown(screen)
    assert "train: 100%" in screen_text and "3/3" in screen_text and "ep/s" in screen_text


def test_a_hand_driven_bar_shows_its_postfix(terminal: tuple[io.TextIOWrapper, int]) -> None:
    stream, screen = terminal
    with progress(total=4, description="bench", stream=stream, mininterval=0) as bar:
        assert bar.enabled
        bar.update(2)
        bar.set_postfix({"rate": "1.2M/s"})
        bar.update(2)
    screen_text = shown(screen)
    assert "bench: 100%" in screen_text and "4/4" in screen_text and "rate=1.2M/s" in screen_text


def test_enabled_overrides_the_terminal_check(terminal: tuple[io.TextIOWrapper, int]) -> None:
    stream, screen = terminal
    assert list(progress(2, "quiet", stream=stream, enabled=False)) == [0, 1]
    assert shown(screen) == ""
    forced = io.StringIO()
    assert list(progress(2, "forced", stream=forced, enabled=True)) == [0, 1]
    assert "forced: 100%" in forced.getvalue()


def test_is_terminal_is_false_for_closed_and_fake_streams() -> None:
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed) and not is_terminal(object()) and not is_terminal(None)
