"""Arrays, images and videos in the tracking sinks, read back with each tool's own reader:
TensorBoard's EventAccumulator (histograms, images), W&B's offline `.wandb` records and the
media files of its run folder, MLflow's artifacts (`MlflowClient.list_artifacts`,
`download_artifacts`), Neptune's offline data (1.x's operation log, neptune-scale's SQLite
operations and file uploads).

What is checked: a histogram's counts sum to the array's size, its range is the array's min
to max; an image's pixels are equal after the PNG round trip; a video's GIF has its frames,
equal, at its fps.
"""

from __future__ import annotations

import array
import base64
import json
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline import Image, Pipeline, Video
from sinks import MlflowSink, NeptuneSink, TensorBoardSink, WandbSink
from sinks._rich import BINS, histogram, rich
from tests.sinks.tracking import read_wandb

torch = pytest.importorskip("torch")  # the core suite's environment has none

FPS = 8.0
"""A GIF keeps frame delays in hundredths of a second: 1/8 s is 12.5 of them, which imageio
writes as 125 ms (Pillow rounds to 10 ms units on read: 120 or 130)."""


def picture(channels: int | None, seed: int = 0) -> np.ndarray:
    """A (6, 5) grey or (6, 5, channels) uint8 image of random pixels."""
    shape = (6, 5) if channels is None else (6, 5, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def clip() -> np.ndarray:
    """(T=4, H=6, W=4, 3) uint8 frames of a few colours, each frame different (a GIF holds
    them exactly, and keeps every frame)."""
    frames = np.zeros((4, 6, 4, 3), dtype=np.uint8)
    for t in range(4):
        frames[t, : t + 1, :, t % 3] = 255
    return frames


def data(seed: int = 0) -> np.ndarray:
    """A (10, 10) array of normal draws: a histogram's data."""
    return np.random.default_rng(seed).normal(size=(10, 10))


def check_gif(encoded: bytes, frames: np.ndarray) -> None:
    decoded = iio.imread(encoded, index=None, extension=".gif")
    assert decoded.shape[0] == frames.shape[0]
    assert np.array_equal(decoded[..., :3], frames)
    assert abs(iio.immeta(encoded, extension=".gif")["duration"] - 1000 / FPS) <= 10


def check_histogram(counts: Any, edges: Any, array: np.ndarray) -> None:
    assert sum(counts) == array.size
    assert math.isclose(edges[0], array.min()) and math.isclose(edges[-1], array.max())


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(max_dims=3, max_side=20),
        elements=st.floats(-1e6, 1e6, allow_nan=False),
    )
)
@example(np.array([5e-324, 0.0]))  # fewer float64s between them than bins
@example(np.array([1.0, 1.0 + 2**-52, 1.0]))
@example(np.array([1e6, np.nextafter(1e6, 2e6)]))
def test_a_histogram_counts_every_element_between_its_min_and_max(array: np.ndarray) -> None:
    counts, edges = histogram(array.ravel())
    assert counts.sum() == array.size and len(edges) == len(counts) + 1 <= BINS + 1
    assert edges[0] <= array.min() and array.max() <= edges[-1]
    if array.min() < array.max():
        assert (edges[0], edges[-1]) == (array.min(), array.max())


@pytest.mark.parametrize(
    "value",
    [np.arange(3.0), [1, 2.5, True], (1, 2), torch.arange(4), np.ones((2, 2), dtype=np.int8)],
)
def test_arrays_lists_and_tensors_are_histogram_data_copied_flat(value: Any) -> None:
    held = rich(value)
    assert isinstance(held, np.ndarray) and held.dtype == np.float64 and held.ndim == 1
    expected = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    assert held.tolist() == expected.ravel().astype(float).tolist()
    assert not np.shares_memory(held, value) if isinstance(value, np.ndarray) else True


@pytest.mark.parametrize(
    "value",
    [
        1.0, np.float32(2), np.array(3.0), torch.tensor(1.0), "text", [], [1, "a"], {},
        [bytearray(b"ab")], [b"1"], ("12",), [array.array("d", [1.0])], np.ma.array([1.0, 2.0]),
        np.array(["1"]), np.array([1 + 2j]), np.array([1, None], dtype=object),
    ],
)
def test_numbers_strings_empty_and_mixed_lists_are_not_histograms(value: Any) -> None:
    assert rich(value) is None


# -- TensorBoard ----------------------------------------------------------------------------


def accumulate(logdir: Path) -> Any:
    from tensorboard.backend.event_processing import event_accumulator as ea

    sizes = {ea.HISTOGRAMS: 0, ea.IMAGES: 0, ea.SCALARS: 0}
    accumulator = ea.EventAccumulator(str(logdir), size_guidance=sizes)
    accumulator.Reload()
    return accumulator


def test_arrays_reach_tensorboard_as_histograms(tmp_path: Path) -> None:
    arrays = {1: data(1), 2: data(2)}
    with Pipeline().to(TensorBoardSink(tmp_path, step_key="step")) as pipeline:
        for step, array in arrays.items():
            pipeline.write({"step": step, "loss": 0.5, "actions": array})
        pipeline.write({"step": 3, "tensor": torch.arange(5), "list": [1, 1, 2]})

    run = accumulate(tmp_path)
    assert sorted(run.Tags()["histograms"]) == ["actions", "list", "tensor"]
    assert [event.value for event in run.Scalars("loss")] == [0.5, 0.5]
    events = run.Histograms("actions")
    assert [event.step for event in events] == [1, 2]
    for event in events:
        histo, array = event.histogram_value, arrays[event.step]
        assert histo.num == array.size and sum(histo.bucket) == array.size
        assert (histo.min, histo.max) == (array.min(), array.max())
        assert math.isclose(histo.sum, array.sum()) and histo.bucket_limit[-1] == array.max()
    (listed,) = run.Histograms("list")
    assert (listed.histogram_value.num, listed.histogram_value.bucket[0]) == (3, 2)


@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_images_reach_tensorboard_as_pngs_with_their_pixels(
    tmp_path: Path, channels: int | None
) -> None:
    pixels = picture(channels)
    with Pipeline().to(TensorBoardSink(tmp_path)) as pipeline:
        pipeline.write({"frame": Image(pixels), "reward": 1.0})

    (event,) = accumulate(tmp_path).Images("frame")
    assert (event.step, event.height, event.width) == (0, 6, 5)
    decoded = iio.imread(event.encoded_image_string, extension=".png")
    assert np.array_equal(decoded, pixels[..., 0] if channels == 1 else pixels)


def test_a_video_reaches_tensorboard_as_an_animated_gif_at_its_fps(tmp_path: Path) -> None:
    frames = clip()
    with Pipeline().to(TensorBoardSink(tmp_path, step_key="step")) as pipeline:
        pipeline.write({"step": 4, "rollout": Video(frames, fps=FPS)})

    (event,) = accumulate(tmp_path).Images("rollout")
    assert (event.step, event.height, event.width) == (4, 6, 4)
    check_gif(event.encoded_image_string, frames)


def test_what_tensorboard_cannot_show_is_dropped_counted_and_warned(tmp_path: Path) -> None:
    sink = TensorBoardSink(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Pipeline().to(sink) as pipeline:
            wide = np.array([-1e308, 1e308])  # numpy cannot bin its range: refused when sent
            pipeline.write(
                {"a": np.ones(3), "nan": np.array([1.0, np.nan]), "e": np.zeros(0), "w": wide}
            )
            pipeline.write({"a": 1.0, "nan": np.ones(2), "e": 2.0})  # a tag keeps its kind
            pipeline.write({"a": Image(picture(3))})

    assert sink.dropped == {"a": 2, "nan": 1, "e": 1, "w": 1}
    messages = [str(warning.message) for warning in caught]
    assert any("NaN or infinity" in message for message in messages)
    assert any("the tag holds arrays (histograms); numbers" in message for message in messages)
    run = accumulate(tmp_path)
    assert [event.step for event in run.Histograms("nan")] == [1]
    assert [event.step for event in run.Histograms("a")] == [0]  # beside the refused one
    assert [event.value for event in run.Scalars("e")] == [2.0]


# -- W&B ------------------------------------------------------------------------------------


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.mark.slow
def test_arrays_images_and_videos_reach_wandb_as_its_types(wandb_env: Path) -> None:
    array, pixels, frames = data(), picture(3), clip()
    sink = WandbSink(step_key="step")
    with Pipeline().to(sink) as pipeline:
        pipeline.write({"step": 1, "q": array, "frame": Image(pixels), "x": 0.25})
        pipeline.write({"step": 2, "rollout": Video(frames, fps=FPS), "bad": [math.inf, 1.0]})

    assert sink.dropped == {"bad": 1}
    run = read_wandb(sink.run_dir)
    first, second = run.rows[1], run.rows[2]
    assert first["x"] == 0.25 and first["q"]["_type"] == "histogram"
    check_histogram(first["q"]["values"], first["q"]["bins"], array)
    assert (first["frame"]["_type"], first["frame"]["width"], first["frame"]["height"]) == (
        "image-file", 5, 6
    )
    assert sink.run_dir is not None
    files = sink.run_dir / "files"
    assert np.array_equal(iio.imread(files / first["frame"]["path"]), pixels)
    assert second["rollout"]["_type"] == "video-file" and second["rollout"]["path"].endswith(".gif")
    check_gif((files / second["rollout"]["path"]).read_bytes(), frames)


# -- MLflow ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_images_and_videos_reach_mlflow_as_artifacts_and_arrays_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    pixels, grey, frames = picture(4), picture(None, seed=1), clip()
    sink = MlflowSink(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", step_key="step")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Pipeline().to(sink) as pipeline:
            pipeline.write({"step": 3, "eval/frame": Image(pixels), "q": data(), "r": 1.0})
            pipeline.write({"step": 4, "eval/frame": Image(grey), "clip": Video(frames, FPS)})
            pipeline.write({"step": 4, "clip": Video(frames[:2], FPS)})

    assert sink.dropped == {"q": 1}
    assert any("MLflow has no histograms" in str(warning.message) for warning in caught)
    client = sink.client
    pngs = sorted(
        artifact.path
        for artifact in client.list_artifacts(sink.run_id, "images")
        if artifact.path.endswith(".png")
    )
    assert [path.split("+")[:3] for path in pngs] == [
        ["images/eval~frame", "step", "3"],
        ["images/eval~frame", "step", "4"],
    ]
    for path, expected in zip(pngs, (pixels, grey), strict=True):
        local = client.download_artifacts(sink.run_id, path, str(tmp_path))
        assert np.array_equal(iio.imread(local), expected)
    videos = [artifact.path for artifact in client.list_artifacts(sink.run_id, "media/clip")]
    assert videos == ["media/clip/4.gif", "media/clip/4_1.gif"]
    for path, expected in zip(videos, (frames, frames[:2]), strict=True):
        local = client.download_artifacts(sink.run_id, path, str(tmp_path))
        check_gif(Path(local).read_bytes(), expected)
    assert client.get_run(sink.run_id).data.metrics == {"step": 4.0, "r": 1.0}


# -- Neptune --------------------------------------------------------------------------------


@pytest.fixture
def neptune_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("NEPTUNE_MODE", "NEPTUNE_PROJECT", "NEPTUNE_API_TOKEN",
                 "NEPTUNE_DATA_DIRECTORY", "NEPTUNE_LOG_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_images_and_videos_reach_a_neptune_1x_run_as_file_series(neptune_env: Path) -> None:
    pixels, frames = picture(3), clip()
    sink = NeptuneSink(data_dir=neptune_env, step_key="step", prefix="train")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Pipeline().to(sink) as pipeline:
            pipeline.write({"step": 1, "frame": Image(pixels), "q": data(), "r": 2.0})
            pipeline.write({"step": 2, "rollout": Video(frames, fps=FPS)})
            pipeline.write({"step": 1, "frame": Image(pixels)})  # not above their last steps

    assert sink.dropped == {"q": 1, "frame": 1, "step": 1}
    assert any("neptune runs have no histogram" in str(warning.message) for warning in caught)
    (run_dir,) = (neptune_env / "offline").glob("run__*")
    images: dict[str, list[tuple[float, bytes]]] = {}
    for log in sorted(run_dir.glob("data-*.log")):
        for line in log.read_text().splitlines():
            op = json.loads(line)["obj"]
            if op["type"] == "LogImages":
                images.setdefault("/".join(op["path"]), []).extend(
                    (entry["step"], base64.b64decode(entry["value"]["data"]))
                    for entry in op["values"]
                )
    assert sorted(images) == ["train/frame", "train/rollout"]
    ((step, png),) = images["train/frame"]
    assert step == 1 and np.array_equal(iio.imread(png, extension=".png"), pixels)
    ((step, gif),) = images["train/rollout"]
    assert step == 2
    check_gif(gif, frames)


@pytest.mark.slow
def test_arrays_images_and_videos_reach_a_neptune_scale_run(neptune_env: Path) -> None:
    from neptune_scale.sync.operations_repository import OperationsRepository

    array, pixels, frames = data(), picture(4), clip()
    sink = NeptuneSink.scale(data_dir=neptune_env, step_key="step")
    with Pipeline().to(sink) as pipeline:
        pipeline.write({"step": 1, "q": array, "frame": Image(pixels), "r": 2.0})
        pipeline.write({"step": 2, "q": torch.ones(3), "rollout": Video(frames, fps=FPS)})
        pipeline.write({"step": 3, "q": 1.0})  # a histogram series keeps its kind

    assert sink.dropped == {"q": 1}
    (db_path,) = neptune_env.glob("*/run_operations.sqlite3")
    repository = OperationsRepository(db_path=db_path.absolute())
    try:
        operations = repository.get_operations(up_to_bytes=1 << 30)
        uploads = {
            request.destination: Path(request.source_path).read_bytes()
            for request in repository.get_file_upload_requests(100)
        }
    finally:
        repository.close(cleanup_files=False)
    values: dict[str, list[tuple[int, Any]]] = {}
    for operation in operations:
        snapshot = operation.operation
        for path, value in getattr(snapshot, "append", {}).items():
            values.setdefault(path, []).append((snapshot.step.whole, value))
    assert [step for step, _ in values["r"]] == [1]
    (one, two) = [value.histogram for _, value in values["q"]]
    check_histogram(one.counts.values, one.bin_edges, array)
    assert list(two.counts.values) == [3] and list(two.bin_edges) == [0.5, 1.5]
    ((step, frame),) = values["frame"]
    assert step == 1 and frame.file_ref.mime_type == "image/png"
    assert np.array_equal(iio.imread(uploads[frame.file_ref.path], extension=".png"), pixels)
    ((step, rollout),) = values["rollout"]
    assert step == 2 and rollout.file_ref.mime_type == "image/gif"
    check_gif(uploads[rollout.file_ref.path], frames)
