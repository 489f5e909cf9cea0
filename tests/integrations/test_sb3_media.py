"""SB3's writer passes SB3's `Image`, `Figure`, `Video`, `HParam` and arrays on as rlpipe's
values; the files a CSV sink writes for them are decoded and compared (cases ported from
SB3's tests/test_logger.py)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import matplotlib
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Figure, FormatUnsupportedError, HParam, Image, Video

from pipeline import Image as RlImage
from pipeline import Pipeline
from pipeline import Video as RlVideo
from pipeline.integrations.sb3 import PipelineWriter, attach
from sinks import CsvSink, MemorySink, TensorBoardSink
from tests.sinks.test_run_summary import hparam_values, hparams_sessions

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SB3_TEXT_FORMATS = ("stdout", "log", "json", "csv")
"""How SB3's docs record videos, figures and hparams: excluded from its text formats."""


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def few_colour_video() -> torch.Tensor:
    """(N=1, T, C, H, W) uint8 frames of a handful of colours (a GIF holds them exactly)."""
    frames = torch.zeros(1, 5, 3, 6, 4, dtype=torch.uint8)
    for t in range(5):
        frames[0, t, t % 3, : t + 1] = 255
    return frames


@pytest.mark.parametrize(
    ("image", "dataformats"),
    [
        (torch.rand(16, 16, 3), "HWC"),  # SB3's test_report_image_to_tensorboard
        (torch.rand(3, 16, 8), "CHW"),
        (np.random.default_rng(0).random((1, 3, 8, 16)), "NCHW"),
        (np.random.default_rng(1).integers(0, 256, (8, 4), dtype=np.uint8), "HW"),
    ],
)
def test_an_sb3_image_reaches_a_csv_sink_as_a_png(
    tmp_path: Path, image: Any, dataformats: str
) -> None:
    path = tmp_path / "run.csv"
    with Pipeline().to(CsvSink(path)) as pipeline:
        PipelineWriter(pipeline).write({"image": Image(image, dataformats)}, {"image": ()}, 7)

    (row,) = rows(path)
    assert row == {"timesteps": "7", "image": "run.csv.media/image/0.png"}
    pixels = np.asarray(image.numpy() if isinstance(image, torch.Tensor) else image)
    order = {"HWC": (0, 1, 2), "CHW": (1, 2, 0), "NCHW": (0, 2, 3, 1), "HW": (0, 1)}
    expected = pixels.transpose(order[dataformats])
    if dataformats == "NCHW":
        expected = expected[0]
    if expected.dtype.kind == "f":
        expected = np.rint(expected * 255)
    assert np.array_equal(iio.imread(tmp_path / row["image"]), expected)


def test_an_sb3_figure_is_drawn_then_closed_when_asked(tmp_path: Path) -> None:
    figure = plt.figure(figsize=(2, 2), dpi=40)
    figure.add_subplot().plot(np.arange(3))
    sink = MemorySink()
    PipelineWriter(Pipeline().to(sink)).write({"figure": Figure(figure, close=True)}, {}, 0)

    value = sink.records[0]["figure"]
    assert isinstance(value, RlImage)
    assert value.array.shape == (80, 80, 4)
    assert not plt.fignum_exists(figure.number)


def test_an_sb3_video_reaches_a_csv_sink_as_a_gif_at_its_fps(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    frames = few_colour_video()
    with Pipeline().to(CsvSink(path)) as pipeline:
        writer = PipelineWriter(pipeline)
        writer.write({"clip": Video(frames, fps=20)}, {"clip": SB3_TEXT_FORMATS}, 3)

    (row,) = rows(path)
    assert row["clip"] == "run.csv.media/clip/0.gif"
    decoded = iio.imread(tmp_path / row["clip"], index=None)
    assert np.array_equal(decoded[..., :3], frames[0].numpy().transpose(0, 2, 3, 1))
    assert iio.immeta(tmp_path / row["clip"])["duration"] == 50


def test_several_sb3_videos_are_side_by_side() -> None:
    sink = MemorySink()
    frames = torch.rand(2, 3, 3, 4, 5)  # SB3's (N, T, C, H, W)
    PipelineWriter(Pipeline().to(sink)).write({"v": Video(frames, fps=4)}, {}, 0)
    video = sink.records[0]["v"]
    assert isinstance(video, RlVideo)
    assert video.frames.shape == (3, 4, 10, 3) and video.fps == 4.0


@pytest.mark.parametrize(
    "histogram", [torch.rand(100), np.random.rand(100), np.ones(1), np.ones(1, dtype="int")]
)
def test_arrays_and_tensors_pass_as_arrays(histogram: Any) -> None:
    # SB3's test_log_histogram: what its TensorBoard format takes as a histogram
    sink = MemorySink()
    PipelineWriter(Pipeline().to(sink)).write({"data": histogram}, {"data": ()}, 0)
    value = sink.records[0]["data"]
    assert isinstance(value, np.ndarray)
    expected = histogram.numpy() if isinstance(histogram, torch.Tensor) else histogram
    assert np.array_equal(value, expected)


def test_a_tensor_written_is_a_copy() -> None:
    sink = MemorySink()
    tensor = torch.ones(3)
    PipelineWriter(Pipeline().to(sink)).write({"t": tensor}, {}, 0)
    tensor.zero_()
    assert sink.records[0]["t"].tolist() == [1.0, 1.0, 1.0]


def test_an_hparam_goes_to_the_pipelines_config() -> None:
    sink = MemorySink()
    writer = PipelineWriter(Pipeline().to(sink))
    hparam = HParam({"learning rate": np.float32(0.5), "gamma": 0.99}, {"train/value_loss": 0})
    writer.write({"hparams": hparam}, {"hparams": SB3_TEXT_FORMATS}, 0)
    assert sink.config == {"learning rate": 0.5, "gamma": 0.99}
    assert sink.records == []  # no metric in that dump: no record


def test_rich_values_excluded_from_the_pipeline_stay_out() -> None:
    sink = MemorySink()
    writer = PipelineWriter(Pipeline().to(sink))
    video = Video(torch.zeros(1, 2, 3, 4, 4), fps=4)
    writer.write({"clip": video, "x": 1.0}, {"clip": ("pipeline",), "x": None}, 0)
    assert sink.records == [{"timesteps": 0, "x": 1.0}]


def test_an_image_given_as_a_blob_name_is_refused_as_sb3_does() -> None:
    writer = PipelineWriter(Pipeline().to(MemorySink()))
    with pytest.raises(FormatUnsupportedError, match="pipeline"):
        writer.write({"image": Image("blob", "HWC")}, {}, 0)


class RecordsRichValues(BaseCallback):
    """Records an HParam at the start, and an array and a video at each rollout's end."""

    def _on_training_start(self) -> None:
        hparams = {"algorithm": type(self.model).__name__, "gamma": self.model.gamma}
        self.logger.record(
            "hparams", HParam(hparams, {"rollout/ep_rew_mean": 0}), exclude=SB3_TEXT_FORMATS
        )

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        steps = self.model.num_timesteps
        self.logger.record("custom/actions", torch.arange(4) + steps)
        frames = torch.zeros(1, 2, 3, 4, 4, dtype=torch.uint8)
        frames[0, 1, 0] = 255
        self.logger.record("custom/video", Video(frames, fps=2), exclude=SB3_TEXT_FORMATS)


@pytest.mark.slow
def test_a_ppo_run_logs_an_hparam_an_array_and_a_video_through_the_writer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ppo.csv"
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, seed=0)
    with Pipeline("sb3").to(CsvSink(path)) as pipeline:
        attach(model, pipeline)
        model.learn(total_timesteps=128, callback=RecordsRichValues())

    assert (tmp_path / "ppo.csv.config.json").read_text().count('"gamma": 0.99') == 1
    logged = rows(path)
    assert [int(row["timesteps"]) for row in logged] == [64, 128]
    for index, row in enumerate(logged):
        steps = int(row["timesteps"])
        assert row["custom/actions"] == str([steps, steps + 1, steps + 2, steps + 3])
        assert row["custom/video"] == f"ppo.csv.media/custom/video/{index}.gif"
        frames = iio.imread(tmp_path / row["custom/video"], index=None)
        assert frames.shape[:3] == (2, 4, 4)
        assert frames[1, 0, 0, 0] == 255 and frames[0].max() == 0


@pytest.mark.slow
def test_a_ppo_run_logs_an_array_and_a_video_to_tensorboard_through_the_writer(
    tmp_path: Path,
) -> None:
    from tensorboard.backend.event_processing import event_accumulator as ea

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, seed=0)
    logdir = tmp_path / "tb"
    sinks = (TensorBoardSink(logdir, step_key="timesteps"), CsvSink(tmp_path / "ppo.csv"))
    with Pipeline("sb3").to(*sinks) as pipeline:
        attach(model, pipeline)
        model.learn(total_timesteps=128, callback=RecordsRichValues())

    assert '"gamma": 0.99' in (tmp_path / "ppo.csv.config.json").read_text()  # the HParam
    run = ea.EventAccumulator(str(logdir), size_guidance={ea.HISTOGRAMS: 0, ea.IMAGES: 0})
    run.Reload()
    actions = run.Histograms("custom/actions")
    assert [event.step for event in actions] == [64, 128]
    for event in actions:  # torch.arange(4) + steps
        histogram = event.histogram_value
        assert (histogram.num, sum(histogram.bucket)) == (4, 4)
        assert (histogram.min, histogram.max) == (event.step, event.step + 3)
    videos = run.Images("custom/video")
    assert [event.step for event in videos] == [64, 128]
    for event in videos:
        frames = iio.imread(event.encoded_image_string, index=None, extension=".gif")
        assert frames.shape[:3] == (2, 4, 4) and frames[0].max() == 0
        assert frames[1, 0, 0, 0] == 255
        assert iio.immeta(event.encoded_image_string, extension=".gif")["duration"] == 500
    assert [event.step for event in run.Scalars("train/value_loss")] == [128]
    [group] = hparams_sessions(logdir).session_groups  # the HParam, in the HPARAMS tab
    assert hparam_values(group) == {"algorithm": "PPO", "gamma": 0.99}
