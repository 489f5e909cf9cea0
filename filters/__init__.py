"""rlpipe filters: nodes that transform, thin out or summarise records on their way to sinks."""

from filters.aggregate import STATISTICS, AggregateFilter
from filters.asynchronous import AsyncNode
from filters.dispatch import Dispatcher
from filters.fields import ConstantFields, Timestamp
from filters.gate import EveryNFilter, LogarithmicFilter
from filters.keyed import KeyedFilter
from filters.keys import DropKeys, FlattenFilter, KeepKeys, PrefixKeys, RenameKeys
from filters.lifetime import LifetimeFilter
from filters.none import NoneFilter
from filters.rate import RateFilter
from filters.rolling import RollingFilter
from filters.smoothing import SmoothingFilter
from filters.time import TimeFilter

__all__ = [
    "STATISTICS",
    "AggregateFilter",
    "AsyncNode",
    "ConstantFields",
    "Dispatcher",
    "DropKeys",
    "EveryNFilter",
    "FlattenFilter",
    "KeepKeys",
    "KeyedFilter",
    "LifetimeFilter",
    "LogarithmicFilter",
    "NoneFilter",
    "PrefixKeys",
    "RateFilter",
    "RenameKeys",
    "RollingFilter",
    "SmoothingFilter",
    "TimeFilter",
    "Timestamp",
]
