"""Value rules and counts at their edges: `is_finite_number`, `jsonable`'s forms (None, keys,
nesting, the int size from which an int is written as text), `text` of an object that cannot
be printed, and `Counts` through a checkpoint."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pipeline.core.counts import Counts
from pipeline.core.values import is_finite_number, jsonable, text


@pytest.mark.parametrize(
    ("value", "finite"),
    [
        (1, True),
        (0.5, True),
        (np.float32(2.0), True),
        (True, True),
        (math.nan, False),
        (-math.inf, False),
        ("1", False),
        (None, False),
        (np.array([1.0]), False),
    ],
)
def test_is_finite_number(value: object, finite: bool) -> None:
    assert is_finite_number(value) is finite


def test_jsonable_keeps_none_and_plain_scalars_and_turns_keys_into_text() -> None:
    assert jsonable(None) is None
    assert jsonable(True) is True and jsonable(5) == 5 and jsonable("s") == "s"
    assert jsonable({1: None, "b": [None, {"c": (1, 2.5)}]}) == {
        "1": None,
        "b": [None, {"c": [1, 2.5]}],
    }


def test_jsonable_writes_ints_of_14000_bits_and_more_as_their_digits() -> None:
    below, at = 2**13999 - 1, 2**13999
    assert below.bit_length() == 13999 and at.bit_length() == 14000
    assert jsonable(below) == below
    assert jsonable(at) == str(at)


def test_text_of_an_object_that_cannot_be_printed_names_its_type() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no str")

        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    assert text(Unprintable()) == "<unprintable Unprintable>"


def test_counts_go_through_a_checkpoint_with_keys_of_any_kind_and_warn_no_second_time() -> None:
    counts = Counts("Node")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts.note("skipped", "m", key="k")
        counts.note("skipped", "m")  # no key: remembered as (reason, None)
        counts.note("lost", "m", key=3, n=2)
    state = counts.state()
    assert state == {
        "counts": {"skipped": 2, "lost": 2},
        "by_key": {"skipped": {"k": 1}, "lost": {"3": 2}},
        "warned": [("lost", "3"), ("skipped", "k"), ("skipped", None)],
    }
    restored = Counts("Node")
    restored.load(state)
    assert restored == counts and restored.by_key == counts.by_key
    assert repr(restored) == "Counts({'skipped': 2, 'lost': 2})"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        restored.note("skipped", "m", key="k")
    assert restored["skipped"] == 3


def test_a_key_whose_text_raises_is_counted_under_its_repr() -> None:
    class NoText:
        def __str__(self) -> str:
            raise RuntimeError("no text")

        def __repr__(self) -> str:
            return "NoText()"

    counts = Counts("Node")
    with pytest.warns(UserWarning, match="refused"):
        counts.note("dropped", "refused", key=NoText(), category=UserWarning)
    assert counts["dropped"] == 1 and counts.by_key["dropped"] == {"NoText()": 1}
