"""Rich values for the tracking sinks: arrays (histograms), images and videos, told apart from
other values once, and turned into each tool's own type on the push thread.

A sink's `_row` reaches `rich` only for a value whose type its fast path does not know (never
for a float, an int or a string), so a record without rich values pays nothing for them.
`rich(value)` returns what the row holds: a flat float64 copy of an array (a histogram's
data), or the `Image`/`Video` itself (immutable: copied when made); None for other values.
The conversions (`tensorboard_value`, `wandb_value`, ...) run where the sink calls its client.
"""

from __future__ import annotations

import io
import numbers
from typing import Any

import numpy as np

from pipeline.core.media import MEDIA_TYPES, Image, Video

__all__ = ["BINS", "NOT_FINITE", "Rich", "histogram", "rich"]

Rich = np.ndarray | Image | Video
"""What a row holds for a rich value."""

BINS = 64
"""Bins of the histograms the sinks compute (W&B's default; neptune-scale takes up to 512)."""

NOT_FINITE = "a histogram takes finite numbers; this array holds NaN or infinity: not sent"
"""Why an array with a NaN or an infinity is dropped."""

_NUMERIC = frozenset("biuf")


def rich(value: Any) -> Rich | None:
    """`value` as a rich value: an `Image` or a `Video` as it is; an array with elements
    (numpy, torch, jax, anything with `__array__`) or a list or tuple of real numbers, of
    any shape, as a flat float64 copy (NaN and infinity kept: see `finite`); None for
    anything else (0-d arrays included: they are numbers)."""
    kind = type(value)
    if kind in MEDIA_TYPES:
        return value
    if kind is list or kind is tuple:
        if value and all(type(item) in _PLAIN for item in value):
            return np.array(value, dtype=np.float64)
        return _array(value) if _numbers_only(value) else None
    if getattr(value, "ndim", None) == 0:  # a 0-d array or tensor: a number
        return None
    if isinstance(value, np.ma.MaskedArray):  # its masked elements are not values
        return None
    if hasattr(value, "__array__") or hasattr(value, "__array_interface__"):
        return _array(value)
    return None


_PLAIN = (int, float, bool)


def _numbers_only(items: list[Any] | tuple[Any, ...]) -> bool:
    """Whether a list or tuple holds only numbers, arrays and lists or tuples of them (numpy
    would read a bytes-like element, an `array.array` or a string of digits as numbers)."""
    for item in items:
        if isinstance(item, (list, tuple)):
            if not _numbers_only(item):
                return False
            continue
        refused = (str, bytes, bytearray, memoryview, np.ma.MaskedArray)
        if isinstance(item, refused) or not (
            isinstance(item, numbers.Real) or hasattr(item, "__array__")
        ):
            return False
    return True


def _array(value: Any) -> np.ndarray | None:
    detach = getattr(value, "detach", None)
    try:
        if callable(detach):  # a torch tensor, perhaps on a GPU
            value = detach().cpu().numpy()
        array = np.asarray(value)
    except Exception:  # ragged, or not an array after all
        return None
    if array.ndim == 0 or array.size == 0 or array.dtype.kind not in _NUMERIC:
        return None
    return np.array(array, dtype=np.float64).ravel()


def finite(data: np.ndarray) -> bool:
    """Whether every element of a histogram's data is finite."""
    return bool(np.isfinite(data).all())


def histogram(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of `data` in `BINS` equal bins from its min to its max (numpy's
    `histogram`; one bin of width 1 around a single value; fewer bins, halving, over a range
    too narrow for `BINS` distinct float64 edges, such as 1.0 to the next float)."""
    low, high = float(data.min()), float(data.max())
    if low == high:
        return np.array([data.size]), np.array([low - 0.5, high + 0.5])
    bins = BINS
    while True:
        try:
            counts, edges = np.histogram(data, bins=bins, range=(low, high))
        except ValueError:  # "Too many bins for data range"
            if bins == 1:
                raise
            bins //= 2
        else:
            return counts, edges


# -- TensorBoard ------------------------------------------------------------------------------


def tensorboard_value(tb: Any, tag: str, value: Rich) -> Any:
    """A `Summary.Value` for TensorBoard: an array as a histogram (`HistogramProto`, as
    `SummaryWriter.add_histogram` writes it: min, max, num, sum, sum of squares, and each
    bin's right edge and count), an image as a PNG and a video as an animated GIF in an
    image summary (as `SummaryWriter.add_video` writes it)."""
    if isinstance(value, np.ndarray):
        counts, edges = histogram(value)
        histo = tb.HistogramProto(
            min=float(value.min()),
            max=float(value.max()),
            num=float(value.size),
            sum=float(value.sum()),
            sum_squares=float(np.dot(value, value)),
            bucket_limit=edges[1:].tolist(),
            bucket=counts.astype(np.float64).tolist(),
        )
        return tb.Value(tag=tag, histo=histo)
    if isinstance(value, Image):
        pixels = value.array
        height, width = pixels.shape[:2]
        channels = pixels.shape[2] if pixels.ndim == 3 else 1
        encoded = value.png()
    else:
        _, height, width, channels = value.frames.shape
        channels = min(channels, 3)  # a GIF has no alpha
        encoded = value.gif()
    image = tb.Summary.Image(
        height=height, width=width, colorspace=channels, encoded_image_string=encoded
    )
    return tb.Value(tag=tag, image=image)


# -- W&B --------------------------------------------------------------------------------------


def wandb_value(wandb: Any, value: Any) -> Any:
    """A value as W&B logs it: an array as `wandb.Histogram` (`histogram`'s bins), an image as
    `wandb.Image`, a video as `wandb.Video` of its animated GIF; anything else as it is."""
    if isinstance(value, np.ndarray):
        return wandb.Histogram(np_histogram=histogram(value))
    if isinstance(value, Image):
        pixels = value.array
        return wandb.Image(pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels)
    if isinstance(value, Video):
        return wandb.Video(io.BytesIO(value.gif()), format="gif")  # its fps is in the GIF
    return value


# -- Neptune ----------------------------------------------------------------------------------


def file_of(value: Image | Video) -> tuple[bytes, str]:
    """The file of an image (PNG) or a video (animated GIF), and its MIME type."""
    if isinstance(value, Image):
        return value.png(), "image/png"
    return value.gif(), "image/gif"
