"""The loss paths the suite knows are open today, and the settings of its property tests.

`OPEN` names the items of issue 22 that are not fixed yet. While an item is open, the
generated streams leave out the input that meets it (so that a property keeps checking
everything else), and one specific case per item, marked `listed(item, ...)`, fails on it.
When a fix lands: remove the item from `OPEN` (the generated streams then include that
input again) and the `listed` marker of its case (which then passes).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

OPEN: frozenset[str] = frozenset(
    # every item of issue 22 and every loss found beyond it is closed; a new one is listed
    # here as "N" (an item) or "found:NAME" (test_found.py) while it is open
    set()
) - frozenset(os.environ.get("RLPIPE_CONFORMANCE_CLOSED", "").split(","))
"""`RLPIPE_CONFORMANCE_CLOSED=7,found:torch` runs the suite as if those items were closed (to
try a fix before editing this list)."""


def is_open(item: str) -> bool:
    """Whether issue 22's `item` is still open (its input is left out of generated streams)."""
    return item in OPEN


def listed(item: str, behaviour: str) -> Any:
    """The marker of the case that fails today because issue 22's `item` is open: a strict
    xfail, so the case fails (XPASS) once the fix lands and the marker must go."""
    return pytest.mark.xfail(
        item in OPEN, strict=True, reason=f"issue 22 item {item}: {behaviour}"
    )


def found(item: str, behaviour: str) -> Any:
    """The marker of a loss the conformance suite found beyond issue 22's list (`item` is
    its key in `OPEN`, `found:...`)."""
    return pytest.mark.xfail(
        item in OPEN, strict=True, reason=f"found by the conformance suite: {behaviour}"
    )


LONG = (
    os.environ.get("RLPIPE_CONFORMANCE", "") == "long"
    or settings.get_current_profile_name() == "conformance-long"
)
"""Whether the nightly (long) profile was asked for."""


def suite(examples: int, long: int | None = None) -> settings:
    """The settings of a property test: `examples` generated cases in the fast profile (the
    test command's; derandomized, so a run is reproducible), the long profile's otherwise
    (`long` cases if given: a property whose case costs seconds, as a tracking sink's run)."""
    if LONG:
        profile = settings.get_profile("conformance-long")
        return settings(
            profile,
            max_examples=long if long is not None else profile.max_examples,
            suppress_health_check=list(HealthCheck),
        )
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
