"""Progress bars for long work that show only on a terminal.

    from pipeline.cli.progress import progress

    for episode in progress(300, "train", unit="ep"):     # 0, 1, ..., 299
        ...
    for batch in progress(batches, "benchmark"):          # any iterable
        ...
    with progress(total=n, description="writing") as bar:  # manual updates
        bar.update(10)
        bar.set_postfix(rate=123.4)
        bar.write("a line of text that does not tear the bar")

A bar (tqdm) is drawn on `stream` (default: stderr) only when that stream is a terminal; when it
is not (a pipe, a file, CI logs) nothing extra is written: iteration yields the items unchanged,
`update`/`set_postfix` do nothing and `write` prints the line to stdout as `print` would.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TextIO, TypeVar, overload

T = TypeVar("T")


class Progress(Generic[T]):
    """An optional tqdm bar over some items (or a count); see `progress()`.

    `enabled` tells whether a bar is drawn; `bar` is the tqdm instance (None when disabled).
    Iterating yields the items; `update(n)` advances a bar driven by hand; `close()` (or leaving
    a `with` block, or finishing the iteration) removes nothing from the output and is
    idempotent."""

    def __init__(
        self,
        items: Iterable[T] | None,
        *,
        description: str,
        total: float | None,
        unit: str,
        stream: TextIO,
        enabled: bool,
        leave: bool,
        options: Mapping[str, Any],
    ) -> None:
        self._items = items
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

            self.bar = tqdm(
                items,
                desc=description or None,
                total=total,
                unit=unit,
                file=stream,
                leave=leave,
                dynamic_ncols=True,
                **options,
            )

    @property
    def enabled(self) -> bool:
        """Whether a bar is drawn."""
        return self.bar is not None

    def __iter__(self) -> Iterator[T]:
        if self._items is None:
            raise TypeError("this progress was made without items; use update() instead")
        if self.bar is not None:
            try:
                yield from self.bar
            finally:
                self.close()
            return
        yield from self._items

    def update(self, n: float = 1) -> None:
        """Advances the bar by `n`."""
        if self.bar is not None:
            self.bar.update(n)

    def set_postfix(self, values: Mapping[str, Any] | None = None, **more: Any) -> None:
        """Shows `key=value` pairs after the bar (numbers as tqdm formats them)."""
        if self.bar is not None:
            self.bar.set_postfix({**(values or {}), **more}, refresh=False)

    def set_description(self, description: str) -> None:
        """Changes the text before the bar."""
        if self.bar is not None:
            self.bar.set_description(description, refresh=False)

    def write(self, message: str, file: TextIO | None = None) -> None:
        """Prints a line (to stdout by default) above the bar without tearing it."""
        target = sys.stdout if file is None else file
        if self.bar is not None:
            self.bar.write(message, file=target)
        else:
            print(message, file=target, flush=True)

    def close(self) -> None:
        """Finishes the bar (leaving its last state on screen unless `leave=False`)."""
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress[T]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is attached to a terminal (False for closed or fake streams)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@overload
def progress(
    items: int | None = None,
    description: str = "",
    *,
    total: float | None = None,
    unit: str = "it",
    stream: TextIO | None = None,
    enabled: bool | None = None,
    leave: bool = True,
    **options: Any,
) -> Progress[int]: ...


@overload
def progress(
    items: Iterable[T],
    description: str = "",
    *,
    total: float | None = None,
    unit: str = "it",
    stream: TextIO | None = None,
    enabled: bool | None = None,
    leave: bool = True,
    **options: Any,
) -> Progress[T]: ...


def progress(
    items: Iterable[Any] | int | None = None,
    description: str = "",
    *,
    total: float | None = None,
    unit: str = "it",
    stream: TextIO | None = None,
    enabled: bool | None = None,
    leave: bool = True,
    **options: Any,
) -> Progress[Any]:
    """A progress bar over `items` (an iterable, or an int n for range(n)), or over `total`
    units advanced by hand with `update()` when `items` is None.

    The bar is drawn on `stream` (default: sys.stderr) when `enabled` is True, or, by default,
    when that stream is a terminal; otherwise nothing extra is written. `total` defaults to
    `len(items)` when it has one. Other keyword arguments go to `tqdm` (e.g. `mininterval`)."""
    target: TextIO = sys.stderr if stream is None else stream
    if isinstance(items, bool):
        raise TypeError("items must be an iterable or an int count, not a bool")
    if isinstance(items, int):
        if items < 0:
            raise ValueError(f"a count must be >= 0, got {items}")
        items = range(items)
    if total is None and items is not None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    draw = is_terminal(target) if enabled is None else enabled
    return Progress(
        items,
        description=description,
        total=total,
        unit=unit,
        stream=target,
        enabled=draw,
        leave=leave,
        options=options,
    )


__all__ = ["Progress", "is_terminal", "progress"]
