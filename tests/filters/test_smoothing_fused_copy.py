"""The fused smoothing step copies a record as `dict(record)` does, for any mapping the
pipeline takes: a dict, a dict subclass, a Mapping, and one registered as a Mapping without
`keys()` (which `dict()` takes as key-value pairs)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest

from filters import SmoothingFilter
from pipeline import Pipeline
from sinks import MemorySink
from tests.conftest import PlainMapping


class Pairs:
    """Registered as a Mapping, without keys(): dict() reads it as pairs ("rx" is r: x)."""

    def __iter__(self) -> Iterator[str]:
        return iter(["rx"])

    def __getitem__(self, key: str) -> float:
        return 1.5

    def __len__(self) -> int:
        return 1


Mapping.register(Pairs)


MAKERS = {
    "dict": dict,
    "OrderedDict": OrderedDict,
    "MappingProxyType": MappingProxyType,
    "Mapping": PlainMapping,
}


def _outputs(records: list[Any], fused: bool) -> list[Any]:
    sink = MemorySink()
    if fused:
        head: Any = Pipeline(close_at_exit=False).smooth("r", coeff=0.5).to(sink)
    else:
        head = SmoothingFilter("r", coeff=0.5)
        head.connect(sink)
    out: list[Any] = []
    for record in records:
        try:
            head.write(record)
        except Exception as error:  # the same refusal, fused or not
            out.append(type(error))
    head.close()
    return [*sink.records, *out]


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_fused_copies_are_the_unfused_ones(kind: str) -> None:
    records = [MAKERS[kind]({"r": float(i), "s": i}) for i in range(5)]
    assert _outputs(records, True) == _outputs(records, False)


def test_a_mapping_without_keys_is_copied_as_dict_copies_it() -> None:
    records = [Pairs() for _ in range(5)]
    assert _outputs(records, True) == _outputs(records, False)
