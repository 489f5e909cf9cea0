"""What `rlpipe plot` draws, as data: each run's metrics, their curves, smoothing and bands.

A column name is a metric in some form (`split_name`): its raw values, a statistic an aggregate
wrote (`<key>_mean`, `<key>/max`, Spinning Up's `AverageKey`) or a smoothed form
(`<key>_smoothed_<coeff>`), parsed by `pipeline.core.names`, which the filters name them with.
A metric's curve is its mean (else raw, else median, else smoothed column); its band is min..max
or mean +- std. x is the most step-like column (`default_x`). Curves hold numpy arrays of the
finite points only; nothing here imports matplotlib.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.cli.runfiles import (
    NO_RUN_FILES,
    Table,
    check_given_file,
    is_data_file,
    read_table,
    run_files,
)
from pipeline.core.names import split_smoothed, split_stat, warmup_ema

DEFAULT_Y = r"(?i)return|EpRet|ep_rew"
"""The metrics plotted when no `--y` is given (searched in column names)."""

BAND_MODES = ("auto", "minmax", "std", "none")
"""The bands a curve can have (see `band_columns`)."""

# -- choosing x and y ------------------------------------------------------------------------

_STEP_RANKS: tuple[tuple[re.Pattern[str], int], ...] = (
    # environment steps (Acme steps/actor_steps, SB3 total_timesteps, RLlib
    # num_env_steps_sampled_lifetime, Spinning Up TotalEnvInteracts)
    (re.compile(r"(^|_)(steps?|timesteps?)(_total|_sampled|_sampled_lifetime|_lifetime)?$"), 0),
    (re.compile(r"^num_env_steps\w*$|envinteracts$"), 0),
    # iterations and epochs
    (re.compile(r"(^|_)(training_iteration|iterations?|iters?|epochs?|updates?)$"), 1),
    # episodes
    (re.compile(r"(^|_)episodes?(_total|_lifetime)?$"), 2),
)
_EVAL_PREFIX = re.compile(r"^(eval|evaluation|evaluator|test)(uation)?[_/]?", re.IGNORECASE)


def step_rank(name: str) -> tuple[int, int] | None:
    """How step-like a column name is (lower is more), or None when it is not a step count:
    environment steps < iterations/epochs < episodes, and a counter of the evaluation loop
    (`eval_steps`) after one of training (`train_steps`, `steps`)."""
    last = name.rsplit("/", 1)[-1].lower()
    for pattern, rank in _STEP_RANKS:
        if pattern.search(last):
            return rank, 1 if _EVAL_PREFIX.match(last) or _EVAL_PREFIX.match(name) else 0
    return None


def is_counter(values: np.ndarray) -> bool:
    """Whether a column counts up: its finite values never decrease and (given two or more)
    end higher than they start. A per-iteration count such as RLlib's constant
    `env_runners/num_env_steps_sampled` is not a counter; its `_lifetime` twin is."""
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return True
    return bool(np.all(np.diff(finite) >= 0)) and bool(finite[-1] > finite[0])


def default_x(table: Table) -> str | None:
    """The most step-like numeric column of the table: a counter (`is_counter`) before a
    column that does not count up, then by `step_rank` (ties: the first in file order)."""
    ranked = [
        (not is_counter(table.columns[name]), rank, position, name)
        for position, name in enumerate(table.columns)
        if (rank := step_rank(name)) is not None
    ]
    return min(ranked)[3] if ranked else None


def split_name(name: str) -> tuple[str, str]:
    """(metric, form) of a column name: form is "raw", "smoothed", or a statistic (mean, std,
    median, min, max) written as rlpipe's aggregates do (`episode_return_mean`), as RLlib does
    (`env_runners/episode_return_mean`) or as Spinning Up does (`AverageEpRet`).

    A smoothed mean (`episode_return_mean_smoothed_0.9`, `AverageEpRet_smoothed_0.9`: smoothing
    after an aggregate) is the smoothed form of the metric itself, so that it is drawn over
    the mean and its band; a smoothed min, max, std or median is a metric of its own."""
    smoothed = split_smoothed(name)
    if smoothed is not None:
        key = smoothed[0]
        base, form = split_name(key)
        return (base, "smoothed") if form == "mean" else (key, "smoothed")
    stat = split_stat(name)
    if stat is not None:
        return stat
    return name, "raw"


@dataclass
class Metric:
    """The columns of one metric in one table: raw/mean/median/smoothed forms and statistics."""

    name: str
    forms: dict[str, str] = field(default_factory=dict)  # form -> column (first one seen)

    @property
    def curve(self) -> str | None:
        """The column drawn as the metric's curve: mean, else raw, else median, else smoothed."""
        for form in ("mean", "raw", "median", "smoothed"):
            if form in self.forms:
                return self.forms[form]
        return None


def metrics_of(columns: Iterable[str]) -> dict[str, Metric]:
    """Every metric of a table, keyed by its name, in first-seen order."""
    found: dict[str, Metric] = {}
    for column in columns:
        base, form = split_name(column)
        found.setdefault(base, Metric(base)).forms.setdefault(form, column)
    return found


def select_metrics(table: Table, specs: Sequence[str], x_key: str | None) -> list[Metric]:
    """The metrics of `table` that `specs` name, in table order. A spec is an exact column name
    (a curve form brings its whole metric: mean, band and all; a statistic such as
    `episode_return_max` is plotted on its own), an exact metric name, or else a regular
    expression searched in column names. Step-like columns are never y."""
    columns = [c for c in table.columns if c != x_key and step_rank(c) is None]
    metrics = metrics_of(columns)
    chosen: dict[str, Metric] = {}
    for spec in specs:
        if spec in table.columns and spec in columns:
            base, form = split_name(spec)
            if form in ("raw", "mean", "median", "smoothed"):
                chosen.setdefault(base, metrics[base])
            else:
                chosen.setdefault(spec, Metric(spec, {"raw": spec}))
        elif spec in metrics:
            chosen.setdefault(spec, metrics[spec])
        else:
            try:
                pattern = re.compile(spec)
            except re.error as error:
                raise ValueError(
                    f"--y {spec!r} is not a column, metric or regex: {error}"
                ) from None
            for column in columns:
                if pattern.search(column):
                    base = split_name(column)[0]
                    chosen.setdefault(base, metrics[base])
    result: list[Metric] = []
    for metric in sorted(chosen.values(), key=lambda m: _first_position(m, columns)):
        if metric.curve is not None:
            result.append(metric)
        else:  # only statistics without a centre (e.g. a lone `_std`): each on its own
            result.extend(Metric(c, {"raw": c}) for c in metric.forms.values())
    return result


def _first_position(metric: Metric, columns: list[str]) -> int:
    return min(columns.index(c) for c in metric.forms.values())


# -- smoothing -------------------------------------------------------------------------------


def ema(values: np.ndarray, coeff: float) -> np.ndarray:
    """SmoothingFilter's warm-up EMA (`pipeline.core.names.warmup_ema`) over the finite values;
    non-finite entries are skipped and stay NaN."""
    if not 0 <= coeff < 1:
        raise ValueError(f"the smoothing coefficient must be in [0, 1), got {coeff!r}")
    out = np.full(len(values), np.nan)
    finite = np.isfinite(values)
    out[finite] = warmup_ema(values[finite].tolist(), coeff)[0]
    return out


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last `window` finite values up to each finite entry (fewer at the
    start); non-finite entries are skipped and stay NaN."""
    if window < 1:
        raise ValueError(f"the window must be >= 1, got {window!r}")
    out = np.full(len(values), np.nan)
    finite = np.isfinite(values)
    kept = values[finite]
    sums = np.concatenate(([0.0], np.cumsum(kept)))
    ends = np.arange(1, len(kept) + 1)
    starts = np.maximum(ends - window, 0)
    out[finite] = (sums[ends] - sums[starts]) / (ends - starts)
    return out


# -- curves ----------------------------------------------------------------------------------


@dataclass
class Run:
    """One run: a name and its tables."""

    name: str
    tables: list[Table]


@dataclass
class Curve:
    """What is drawn for one metric of one table of one run. Arrays hold only the rows where
    x and the drawn value are finite, in file order."""

    run: str
    panel: str
    x_key: str
    x: np.ndarray
    y_key: str  # the bold curve's column, or e.g. "EMA 0.9 of episode_return"
    y: np.ndarray
    smoothing: str | None = None  # how the bold curve is smoothed: `smoothing_note`
    raw_key: str | None = None  # the faint values under a smoothed curve
    raw_x: np.ndarray | None = None
    raw: np.ndarray | None = None
    band_kind: str | None = None  # "minmax" or "std"
    band_keys: tuple[str, str] | None = None  # (min, max) or (mean, std) columns
    band_x: np.ndarray | None = None
    band_low: np.ndarray | None = None
    band_high: np.ndarray | None = None


def smoothing_note(*, coeff: float | None = None, window: int | None = None) -> str | None:
    """How far a smoothed curve trails its values, for the legend: an EMA of coefficient
    `coeff` averages about the last 1 / (1 - coeff) points (0.99: 100), a moving average the
    last `window`; on a rising curve it lags that far behind the raw values, which must not
    read as slow learning. None for a coefficient the name did not give."""
    if window is not None:
        return f"average of the last {window} points: trails the raw values"
    if coeff is None or not 0 <= coeff < 1:
        return None
    points = 1 / (1 - coeff)
    return f"EMA {coeff:g} ≈ average of the last {points:.0f} points: trails the raw values"


def _finite(x: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    keep = np.isfinite(x)
    for y in ys:
        keep &= np.isfinite(y)
    return (x[keep], *(y[keep] for y in ys))


def make_curve(
    run: str,
    panel: str,
    table: Table,
    metric: Metric,
    x_key: str | None,
    *,
    smooth: float | None = None,
    window: int | None = None,
    band: str = "auto",
) -> Curve | None:
    """The curve of `metric` in `table` (None when it has no finite point)."""
    columns = table.columns
    x = columns[x_key] if x_key is not None else np.arange(table.rows, dtype=np.float64)
    label = x_key if x_key is not None else "row"
    centre = metric.curve
    assert centre is not None
    values = columns[centre]
    raw_key: str | None = None
    raw: np.ndarray | None = None
    if smooth is not None or window is not None:
        raw_key, raw = centre, values
        if smooth is not None:
            y_key, y = f"EMA {smooth:g} of {centre}", ema(values, smooth)
        else:
            assert window is not None
            y_key, y = f"mean of last {window} {centre}", moving_average(values, window)
    elif "smoothed" in metric.forms and centre != metric.forms["smoothed"]:
        raw_key, raw = centre, values
        y_key = metric.forms["smoothed"]
        y = columns[y_key]
    else:
        y_key, y = centre, values
    cx, cy = _finite(x, y)
    if not len(cx):
        return None
    curve = Curve(run, panel, label, cx, y_key, cy)
    if window is not None:
        curve.smoothing = smoothing_note(window=window)
    elif smooth is not None:
        curve.smoothing = smoothing_note(coeff=smooth)
    elif raw_key is not None and (parts := split_smoothed(y_key)) is not None:
        curve.smoothing = smoothing_note(coeff=parts[1])
    if raw is not None and raw_key is not None:
        curve.raw_key = raw_key
        curve.raw_x, curve.raw = _finite(x, raw)
    chosen = band_columns(metric, band)
    if chosen is not None:
        kind, first, second = chosen
        if kind == "std":
            low, high = columns[first] - columns[second], columns[first] + columns[second]
        else:
            low, high = columns[first], columns[second]
        bx, blow, bhigh = _finite(x, low, high)
        if len(bx):
            curve.band_kind, curve.band_keys = kind, (first, second)
            curve.band_x, curve.band_low, curve.band_high = bx, blow, bhigh
    return curve


def band_columns(metric: Metric, band: str) -> tuple[str, str, str] | None:
    """The metric's band in mode `band`: ("minmax", min column, max column) or ("std", mean
    column, std column); None when the mode is "none" or the columns are missing ("auto"
    prefers min/max)."""
    forms = metric.forms
    if band in ("auto", "minmax") and "min" in forms and "max" in forms:
        return "minmax", forms["min"], forms["max"]
    if band in ("auto", "std") and "mean" in forms and "std" in forms:
        return "std", forms["mean"], forms["std"]
    return None


def load_runs(paths: Sequence[str | os.PathLike[str]]) -> list[Run]:
    """The runs the arguments name: a file is a run of one table (a file whose suffix names no
    format rlpipe reads is refused: `check_given_file`, ValueError); a folder with data files
    is a run of all of them; a folder without is searched for sub-folders that have some, each
    a run. Runs are named by their path relative to the arguments' common folder."""
    found: list[tuple[Path, list[Path]]] = []
    for given in paths:
        path = Path(given)
        if path.is_file():
            check_given_file(path)
            found.append((path, [path]))
        elif path.is_dir():
            files = run_files(path)
            if files:
                found.append((path, files))
                continue
            subfolders = sorted(
                {p.parent for p in path.rglob("*") if p.is_file() and is_data_file(p)} - {path}
            )
            visible = [d for d in subfolders if not any(part.startswith(".") for part in d.parts)]
            if not visible:
                raise FileNotFoundError(f"{path}: {NO_RUN_FILES}")
            found.extend((d, run_files(d)) for d in visible)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    names = run_names([p for p, _ in found])
    return [
        Run(name, [read_table(f) for f in files])
        for name, (_, files) in zip(names, found, strict=True)
    ]


def run_names(paths: Sequence[Path]) -> list[str]:
    """Short distinct names: the paths relative to their common folder (the last part for a
    single path)."""
    if len(paths) == 1:
        return [paths[0].name or str(paths[0])]
    absolute = [p.resolve() for p in paths]
    common = Path(os.path.commonpath(absolute))
    names = [str(p.relative_to(common)) if p != common else p.name for p in absolute]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def make_curves(
    runs: Sequence[Run],
    *,
    x: str | None = None,
    y: Sequence[str] = (),
    smooth: float | None = None,
    window: int | None = None,
    band: str = "auto",
) -> list[Curve]:
    """Every curve to draw, grouped by panel in first-seen order. A panel is a metric (prefixed
    by the table's label when a run has several tables, e.g. "eval: episode_return")."""
    if smooth is not None and window is not None:
        raise ValueError("give --smooth or --window, not both")
    if band not in BAND_MODES:
        raise ValueError(f"band must be one of {BAND_MODES}, got {band!r}")
    specs = list(y) or [DEFAULT_Y]
    curves: list[Curve] = []
    for run in runs:
        several = len(run.tables) > 1
        for table in run.tables:
            if not table.rows:
                continue
            if x is None:
                x_key = default_x(table)
            elif x in table.columns:
                x_key = x
            else:
                print(
                    f"rlpipe plot: {table.path} has no numeric column {x!r}; using the row index",
                    file=sys.stderr,
                )
                x_key = None
            for metric in select_metrics(table, specs, x_key):
                panel = f"{table.label}: {metric.name}" if several else metric.name
                curve = make_curve(
                    run.name, panel, table, metric, x_key, smooth=smooth, window=window, band=band
                )
                if curve is not None:
                    curves.append(curve)
    order = list(dict.fromkeys(c.panel for c in curves))
    return sorted(curves, key=lambda c: order.index(c.panel))


__all__ = [
    "BAND_MODES",
    "DEFAULT_Y",
    "Curve",
    "Metric",
    "Run",
    "band_columns",
    "default_x",
    "ema",
    "is_counter",
    "load_runs",
    "make_curve",
    "make_curves",
    "metrics_of",
    "moving_average",
    "run_names",
    "select_metrics",
    "smoothing_note",
    "split_name",
    "step_rank",
]
