"""`flatten` called on its own: the default separator and the collisions it reports."""

from __future__ import annotations

from pipeline.core.flatten import flatten


def test_nested_mappings_become_slash_separated_keys_by_default() -> None:
    assert flatten({"a": {"b": {"c": 1}, "d": 2}, "e": 3}) == {"a/b/c": 1, "a/d": 2, "e": 3}


def test_a_name_given_twice_keeps_the_earlier_value_and_is_reported_once_per_collision() -> None:
    collisions: list[str] = []
    flat = flatten({"a/b": 1, "a": {"b": 2, "c": 3}, "x": 4}, collisions=collisions)
    assert flat == {"a/b": 1, "a/c": 3, "x": 4}
    assert collisions == ["a/b"]
