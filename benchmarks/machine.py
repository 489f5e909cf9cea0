"""What the benchmarks say about the machine they ran on."""

from __future__ import annotations

import os


def load() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (empty where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return []
