"""rlpipe filters: nodes that transform, thin out or summarise records on their way to sinks."""

from filters.aggregate import STATISTICS, AggregateFilter
from filters.asynchronous import AsyncNode
from filters.dispatch import Dispatcher
from filters.gate import EveryNFilter, LogarithmicFilter
from filters.keys import DropKeys, FlattenFilter, KeepKeys, PrefixKeys, RenameKeys
from filters.none import NoneFilter
from filters.smoothing import SmoothingFilter
from filters.time import TimeFilter

__all__ = [
    "STATISTICS",
    "AggregateFilter",
    "AsyncNode",
    "Dispatcher",
    "DropKeys",
    "EveryNFilter",
    "FlattenFilter",
    "KeepKeys",
    "LogarithmicFilter",
    "NoneFilter",
    "PrefixKeys",
    "RenameKeys",
    "SmoothingFilter",
    "TimeFilter",
]
