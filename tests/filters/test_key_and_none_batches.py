"""Batches through the key filters and NoneFilter: the same records as row by row, in the
cases the row-wise tests do not reach (object arrays holding None, runs of all-None rows,
nested mappings after a numeric column, a rename that overwrites a column)."""

from __future__ import annotations

import warnings

import numpy as np

from filters import FlattenFilter, NoneFilter, RenameKeys
from pipeline.core.node import Node
from sinks import MemorySink


def batch(node: Node, columns: dict[str, object]) -> list[dict[str, object]]:
    sink = MemorySink()
    node.connect(sink)
    node.write_batch(columns)
    return sink.records


def test_none_filter_drops_none_from_an_object_array_and_keeps_numeric_columns() -> None:
    records = batch(NoneFilter(), {"a": np.array([1, None, 3], dtype=object), "b": np.arange(3)})
    assert records == [{"a": 1, "b": 0}, {"b": 1}, {"a": 3, "b": 2}]


def test_none_filter_turns_rows_that_are_all_none_into_empty_records_in_place() -> None:
    records = batch(NoneFilter(), {"a": [1, None, None, 4], "b": [None, None, None, 5]})
    assert records == [{"a": 1}, {}, {}, {"a": 4, "b": 5}]


def test_flatten_filter_flattens_a_nested_column_that_comes_after_a_numeric_one() -> None:
    nested = np.array([{"a": 1}, {"a": 2}], dtype=object)
    records = batch(FlattenFilter(), {"x": np.arange(2), "cfg": nested, "y": [5, 6]})
    assert records == [{"x": 0, "cfg/a": 1, "y": 5}, {"x": 1, "cfg/a": 2, "y": 6}]


def test_flatten_filter_passes_a_batch_of_numeric_and_flat_columns_as_it_is() -> None:
    columns = {"x": np.arange(2), "tag": np.array(["a", "b"], dtype=object)}
    sink = MemorySink()
    node = FlattenFilter()
    node.connect(sink)
    seen: list[object] = []
    node.emit_batch = seen.append  # type: ignore[method-assign, assignment]
    node.write_batch(columns)
    assert seen == [columns] and seen[0] is columns


def test_a_rename_onto_an_existing_column_counts_every_row_under_the_name() -> None:
    node = RenameKeys({"a": "b"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        records = batch(node, {"a": [1, 2], "b": [3, 4]})
    assert records == [{"b": 3}, {"b": 4}]
    assert node.overwritten == 2 and node.counts.by_key["overwritten"] == {"b": 2}
    assert [str(w.message) for w in caught] == [
        "RenameKeys: a value under 'b' overwrites an earlier one of the same name; the later "
        "wins (counted in .counts['overwritten']; warned once per key)"
    ]


def test_the_overwrite_warning_of_a_record_is_a_user_warning_naming_the_key() -> None:
    node = RenameKeys({"a": "b"})
    node.connect(MemorySink())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        node.write({"a": 1, "b": 2})
    assert caught[0].category is UserWarning and "'b'" in str(caught[0].message)
