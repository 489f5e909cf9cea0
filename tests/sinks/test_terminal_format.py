"""TerminalSink's text, character for character: number forms at their thresholds, the line
and table layouts, labels, and the arguments it refuses."""

from __future__ import annotations

import pytest

from sinks import TerminalSink
from sinks.terminal import format_value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (999_999.0, "999999.000"),  # below a million: fixed point
        (1e6, "1.000e+06"),  # a million and more: scientific
        (-1e6, "-1.000e+06"),
        (0.0, "0.000"),  # zero is not "very small"
        (0.001, "0.001"),  # exactly 10**-precision: fixed point
        (0.0009, "9.000e-04"),  # below it: scientific
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
    ],
)
def test_floats_switch_to_scientific_notation_at_a_million_and_below_ten_to_minus_precision(
    value: float, text: str
) -> None:
    assert format_value(value) == text


def test_precision_sets_the_decimals_of_floats_and_of_the_floats_in_a_list() -> None:
    assert format_value(2.0, precision=1) == "2.0"
    assert format_value(0.01, precision=1) == "1.0e-02"
    assert format_value([0.123, 7, 2.0], precision=1) == "[0.1, 7, 2.0]"


def test_a_list_of_six_is_shown_whole_and_a_longer_one_cut_after_six() -> None:
    assert format_value(list(range(6))) == "[0, 1, 2, 3, 4, 5]"
    assert format_value(list(range(7))) == "[0, 1, 2, 3, 4, 5, ...]"
    assert format_value([]) == "[]"


def test_text_of_eighty_characters_is_shown_whole_and_longer_text_cut_to_eighty() -> None:
    assert format_value("y" * 80) == "y" * 80
    assert format_value("y" * 81) == "y" * 77 + "..."
    assert len(format_value("y" * 81)) == 80


def test_a_line_starts_with_the_humanized_label_only_when_there_is_one() -> None:
    assert TerminalSink().format_line({"a": 1}) == "A = 1"
    assert TerminalSink("my_run").format_line({"a": 1}) == "[My Run] A = 1"
    assert TerminalSink("my_run", humanize_keys=False).format_line({"a": 1}) == "[my_run] a = 1"


def test_a_line_without_humanized_keys_shows_keys_as_written_and_values_at_the_precision() -> None:
    sink = TerminalSink(humanize_keys=False, precision=1)
    assert sink.format_line({"b_x": 2.75, "a_y": [0.123, 1]}) == "a_y = [0.1, 1] | b_x = 2.8"


def test_a_line_sorts_keys_of_mixed_types_by_their_text() -> None:
    assert TerminalSink().format_line({"b": 1, 2: 3, "a": 2}) == "2 = 3 | A = 2 | B = 1"  # type: ignore[dict-item]


def test_a_table_is_boxed_with_the_label_first_and_keys_grouped_under_their_last_prefix() -> None:
    sink = TerminalSink("run", mode="table", precision=2)
    record = {"train/actor/loss": 0.5, "train/actor/lr": 0.001, "time/fps": 100, "steps": 7}
    assert sink.format_table(record) == "\n".join(
        [
            "---------------------------",
            "| [run]        |          |",
            "| steps        | 7        |",
            "| time/        |          |",
            "|     fps      | 100      |",
            "| train/actor/ |          |",
            "|     loss     | 0.50     |",
            "|     lr       | 1.00e-03 |",
            "---------------------------",
        ]
    )


def test_an_empty_record_is_an_empty_box_in_table_mode() -> None:
    assert TerminalSink(mode="table").format_table({}) == "-------\n-------"


def test_a_table_sorts_keys_of_mixed_types_by_their_text() -> None:
    assert TerminalSink(mode="table").format_table({"b": 1, 2: 3}) == "\n".join(  # type: ignore[dict-item]
        ["---------", "| 2 | 3 |", "| b | 1 |", "---------"]
    )


def test_precision_zero_is_accepted() -> None:
    assert TerminalSink(precision=0).format_line({"x": 2.25}) == "X = 2"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mode": "csv"}, r"mode must be 'line' or 'table', got 'csv'"),
        ({"precision": -1}, r"precision must be an int >= 0, got -1"),
        ({"precision": 1.5}, r"precision must be an int >= 0, got 1\.5"),
        ({"precision": True}, r"precision must be an int >= 0, got True"),
    ],
)
def test_bad_arguments_are_value_errors_naming_the_argument(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TerminalSink(**options)  # type: ignore[arg-type]
