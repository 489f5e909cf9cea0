"""Key matching and value conversion."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline import KeyMatcher, plain, to_float
from pipeline.core.counts import Counts
from pipeline.core.keys import clashes, note_clash


def test_key_matcher_searches_and_caches_per_key() -> None:
    match = KeyMatcher("return")
    assert match("episode_return") and not match("episode_length")
    assert match._cache == {"episode_return": True, "episode_length": False}


def test_a_bad_regex_is_a_value_error_naming_the_argument() -> None:
    with pytest.raises(ValueError, match="regex='\\('"):
        KeyMatcher("(")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, 1.5), (3, 3.0), (True, 1.0), (np.float32(2.5), 2.5), (np.int64(7), 7.0),
        (np.array(4.0), 4.0), (np.bool_(False), 0.0), (10**400, math.inf), (-(10**400), -math.inf),
    ],
)
def test_real_number_scalars_convert_to_float(value: object, expected: float) -> None:
    assert to_float(value) == expected


@pytest.mark.parametrize(
    "value", [None, "1.0", b"1", np.arange(3), np.array("x"), 1 + 2j, np.complex64(1), [1.0], {}]
)
def test_everything_else_is_not_a_number(value: object) -> None:
    assert to_float(value) is None


def test_plain_turns_numpy_into_python() -> None:
    assert plain({"a": np.arange(2), "b": (np.float64(1.5),)}) == {"a": [0, 1], "b": [1.5]}
    assert type(plain(np.int32(3))) is int


def test_an_output_name_clashes_with_a_key_of_its_text_or_an_earlier_name() -> None:
    keys = ["x", "x_mean", 1]
    assert clashes(keys, ["x_mean", "x_std", "1", "x_std", 2]) == (True, False, True, True, False)
    assert clashes([], []) == ()


def test_a_clash_is_counted_per_name_and_warned_once() -> None:
    counts = Counts("Node")
    with pytest.warns(UserWarning, match="'x_mean' is already a key of the record") as caught:
        note_clash(counts, "x_mean")
        note_clash(counts, "x_mean", 3)
    assert len(caught) == 1
    assert counts["clashed"] == 4 and counts.by_key["clashed"] == {"x_mean": 4}
