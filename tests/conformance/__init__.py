"""The conformance suite: one contract, checked for every node and every local sink.

For any stream of records and any fault, each value written is stored exactly once as
written (under the sink's documented normalisation) or counted with its reason and warned
once; written = stored + counted; `failures()` names every sink that lost anything; fused,
unfused, row and batch paths agree. See README.md here for the protocol a sink joins by.
"""

from tests.conformance.harness import check, check_sink, run
from tests.conformance.normalise import Float, Text, form, same_cell, same_json, same_object
from tests.conformance.sinks import SINKS, SinkSpec

__all__ = [
    "SINKS",
    "Float",
    "SinkSpec",
    "Text",
    "check",
    "check_sink",
    "form",
    "run",
    "same_cell",
    "same_json",
    "same_object",
]
