"""Image and video values: what a record holds to log a picture or a clip, validated when
made, and their encoding to files (PNG, animated GIF) with the `media` extra."""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO

import numpy as np

MEDIA_EXTRA = "pip install 'rlpipe[media]'"
"""How to install what encodes media files (Pillow, imageio)."""


class MediaExtraMissing(ImportError):
    """Raised when a media value is to be encoded and the `media` extra is not installed."""


def _pixels(value: Any, what: str) -> np.ndarray:
    """`value` (a numpy array, a torch tensor, anything numpy takes) as a read-only uint8
    copy: uint8 as it is, bool as 0/255, floats in [0, 1] scaled to 0-255, other integers
    in 0-255; anything else is refused with a ValueError."""
    detach = getattr(value, "detach", None)
    if callable(detach):  # a torch tensor, perhaps on a GPU
        value = detach().cpu().numpy()
    try:
        array = np.array(value)
    except Exception as error:
        raise ValueError(
            f"{what} must be an array of pixels, got {type(value).__name__}"
        ) from error
    kind = array.dtype.kind
    if kind == "u" and array.dtype.itemsize == 1:
        pixels = array
    elif kind == "b":
        pixels = array.astype(np.uint8) * 255
    elif kind == "f":
        finite = bool(np.all(np.isfinite(array)))
        if array.size and not (finite and array.min() >= 0.0 and array.max() <= 1.0):
            raise ValueError(
                f"{what}: float pixels must be finite and in [0, 1], got values in "
                f"[{array.min()}, {array.max()}]"
            )
        pixels = np.rint(array * 255.0).astype(np.uint8)
    elif kind in "iu":
        if array.size and not (array.min() >= 0 and array.max() <= 255):
            raise ValueError(
                f"{what}: integer pixels must be in [0, 255], got values in "
                f"[{array.min()}, {array.max()}]"
            )
        pixels = array.astype(np.uint8)
    else:
        raise ValueError(
            f"{what}: pixels must be uint8, bool, integers in [0, 255] or floats in [0, 1], "
            f"got dtype {array.dtype}"
        )
    if pixels is array:
        pixels = array.copy()
    pixels.flags.writeable = False
    return pixels


def _is_figure(value: Any) -> bool:
    """Whether `value` is a matplotlib figure (matplotlib is not imported to tell)."""
    return callable(getattr(value, "savefig", None)) and hasattr(value, "canvas")


def _render(figure: Any) -> np.ndarray:
    """A matplotlib figure drawn as an RGBA array (H, W, 4)."""
    canvas = figure.canvas
    if not callable(getattr(canvas, "buffer_rgba", None)):  # not an Agg-based canvas
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())


class Image:
    """An image to log: `Image(array)` with an array of shape (H, W) (grey) or (H, W, C)
    with C = 1 (grey), 3 (RGB) or 4 (RGBA), of dtype uint8 (0-255), bool, integers in
    0-255 or floats in [0, 1] (numpy arrays, torch tensors, anything numpy takes); or
    `Image(figure)` with a matplotlib figure, drawn when the image is first stored (RGBA).

    The array is checked and copied when the image is made (a ValueError names what is
    wrong), so changing the caller's array later changes nothing. `array` is the image as
    uint8 pixels, read-only. File sinks write it as a PNG file; see docs/sinks.md.
    """

    __slots__ = ("_array", "_figure")

    def __init__(self, image: Any) -> None:
        self._figure: Any = None
        if _is_figure(image):
            self._figure = image
            self._array: np.ndarray | None = None
            return
        pixels = _pixels(image, "Image")
        if pixels.ndim == 3 and pixels.shape[2] in (1, 3, 4):
            pass
        elif pixels.ndim != 2:
            raise ValueError(
                "Image takes an array of shape (H, W) or (H, W, C) with C in 1, 3, 4, "
                f"got shape {pixels.shape}"
            )
        if 0 in pixels.shape[:2]:
            raise ValueError(f"Image: an image has pixels, got shape {pixels.shape}")
        self._array = pixels

    @property
    def array(self) -> np.ndarray:
        """The pixels, (H, W) or (H, W, C), uint8, read-only (a figure is drawn once, here)."""
        if self._array is None:
            pixels = _pixels(_render(self._figure), "Image(figure)")
            self._array = pixels
            self._figure = None
        return self._array

    def save(self, path: str | os.PathLike[str] | BinaryIO) -> None:
        """Writes the image as a PNG file, to a path or a binary file object (Pillow;
        MediaExtraMissing without it)."""
        pil = _import("PIL.Image")
        pixels = self.array
        if pixels.ndim == 3 and pixels.shape[2] == 1:
            pixels = pixels[:, :, 0]
        target = path if hasattr(path, "write") else os.fspath(path)
        pil.fromarray(np.ascontiguousarray(pixels)).save(target, format="PNG")

    def png(self) -> bytes:
        """The image encoded as PNG (what `save` writes)."""
        buffer = io.BytesIO()
        self.save(buffer)
        return buffer.getvalue()

    def __repr__(self) -> str:
        if self._array is None:
            return "Image(<figure>)"
        return f"Image({'x'.join(map(str, self._array.shape))})"


class Video:
    """A video to log: `Video(frames, fps)` with frames of shape (T, H, W, C), C = 1 (grey),
    3 (RGB) or 4 (RGBA), T >= 1, pixels as for `Image`; `fps` frames per second (> 0).

    The frames are checked and copied when the video is made. File sinks write it as an
    animated GIF (imageio); a GIF holds at most 256 colours per frame and no partial
    transparency, and its frame delays are whole hundredths of a second.
    """

    __slots__ = ("fps", "frames")

    def __init__(self, frames: Any, fps: float = 30.0) -> None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not (
            0 < fps < float("inf")
        ):
            raise ValueError(f"Video: fps must be a number > 0, got {fps!r}")
        pixels = _pixels(frames, "Video")
        if pixels.ndim != 4 or pixels.shape[3] not in (1, 3, 4):
            raise ValueError(
                "Video takes frames of shape (T, H, W, C) with C in 1, 3, 4, "
                f"got shape {pixels.shape}"
            )
        if 0 in pixels.shape[:3]:
            raise ValueError(f"Video: a video has frames with pixels, got shape {pixels.shape}")
        self.frames = pixels
        self.fps = float(fps)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the video as an animated GIF that loops (imageio; MediaExtraMissing
        without it)."""
        with open(os.fspath(path), "wb") as file:
            file.write(self.gif())

    def gif(self) -> bytes:
        """The video encoded as an animated GIF that loops (what `save` writes)."""
        iio = _import("imageio.v3")
        frames = self.frames
        if frames.shape[3] == 1:
            frames = frames[..., 0]
        elif frames.shape[3] == 4:
            frames = frames[..., :3]  # GIF has no alpha channel
        encoded: bytes = iio.imwrite(
            "<bytes>", np.ascontiguousarray(frames), extension=".gif",
            duration=1000.0 / self.fps, loop=0,
        )
        return encoded

    def __repr__(self) -> str:
        return f"Video({'x'.join(map(str, self.frames.shape))}, fps={self.fps:g})"


MEDIA_TYPES = frozenset({Image, Video})
"""The media value types: a sink tells them by `type(value) in MEDIA_TYPES`."""

MEDIA_SUFFIX = {Image: ".png", Video: ".gif"}
"""The file suffix each media type is written with."""


def _import(module: str) -> Any:
    from importlib import import_module

    try:
        return import_module(module)
    except ImportError as error:
        raise MediaExtraMissing(
            f"writing images and videos to files needs Pillow and imageio: {MEDIA_EXTRA}"
        ) from error


def media_missing() -> MediaExtraMissing | None:
    """The error that encoding media would raise for want of the `media` extra, or None."""
    from importlib.util import find_spec

    for module in ("PIL", "imageio"):
        if find_spec(module) is None:
            return MediaExtraMissing(
                f"writing images and videos to files needs Pillow and imageio: {MEDIA_EXTRA}"
            )
    return None
