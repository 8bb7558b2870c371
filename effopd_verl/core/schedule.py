"""Which global steps trigger an EffOPD search.

**Base triggers** b_1 < b_2 < …: the geometric steps t_k = first·growth^k (1, 2, 4, 8, … by default).
With ``every`` = W set, the geometric triggers run while their windows t_k − t_{k−1} = t_{k−1}·(growth − 1)
are ≤ W; from the last of them, S, a search runs every W steps: S + W, S + 2W, …::

    >>> s = TriggerSchedule(first=1, growth=2)
    >>> [t for t in range(1, 20) if s.is_trigger(t)]
    [1, 2, 4, 8, 16]
    >>> s.next_trigger(5)    # resumed after step 5: the next search runs at step 8
    8
    >>> s.next_trigger(0)
    1
    >>> TriggerSchedule(first=1, growth=2, every=4).triggers_up_to(24)    # windows 1, 2, 4, then 4, 4, …
    [1, 2, 4, 8, 12, 16, 20, 24]
    >>> TriggerSchedule(first=1, growth=2, every=3).triggers_up_to(12)    # S = 4: the window 4 → 8 exceeds 3
    [1, 2, 4, 7, 10]

**Back-off** (``backoff_after`` = k): the schedule also reads the past searches, (step, accepted α) pairs
in step order, so that a resumed run with the same history asks the same questions and gets the same
answers (the history is in the checkpoint; nothing else is kept). Before step t, let r be the number of
searches in a row, ending with the last one (at step s), that accepted nothing (α = 0), and j = ⌊r/k⌋:

- j = 0: the base triggers (an accepted jump resets r to 0, so also the base schedule again);
- ``backoff="stop"``, j ≥ 1: no search any more;
- ``backoff="double"``, j ≥ 1: only every 2^j-th base trigger after s: t triggers iff it is a base
  trigger and n(t) − n(s) is a multiple of 2^j, with n(t) = #{i : b_i ≤ t}. On a periodic stretch the
  window doubles at every k further empty searches (W, 2W, 4W, …); on a geometric one, base triggers are skipped.

With k = 2 and every search rejecting, on the base triggers 1, 2, 4, 8, 12, 16, …::

    >>> def replay(schedule, last, accepts=lambda t: False):
    ...     searches = []
    ...     for t in range(1, last + 1):
    ...         if schedule.is_trigger(t, searches):
    ...             searches.append((t, 2.0 if accepts(t) else 0.0))
    ...     return [t for t, _ in searches]
    >>> replay(TriggerSchedule(every=4, backoff_after=2, backoff="double"), 64)
    [1, 2, 8, 16, 32, 48]
    >>> replay(TriggerSchedule(every=4, backoff_after=2, backoff="stop"), 64)
    [1, 2]
    >>> replay(TriggerSchedule(every=4, backoff_after=2, backoff="double"), 64, accepts=lambda t: t == 16)
    [1, 2, 8, 16, 20, 24, 32, 40, 56]

The searches with back-off are always a subset of the base triggers, so back-off never adds a search.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

BACKOFFS = ("double", "stop")

Search = tuple[int, float]
"""One past search: (global step, accepted α; 0 when every candidate was rejected)."""


@dataclass(frozen=True)
class TriggerSchedule:
    """Base triggers first·growth^k (then every ``every`` steps), thinned by the back-off (module docstring)."""

    first: int = 1
    """The first trigger step (≥ 1)."""

    growth: int = 2
    """Ratio between consecutive geometric triggers (≥ 2)."""

    every: int | None = None
    """Once the geometric windows would exceed it, a search every ``every`` steps (≥ 1); None: geometric throughout."""

    backoff_after: int | None = None
    """k: back off after k searches in a row that accepted nothing (≥ 1); None: never."""

    backoff: str = "double"
    """``double``: every 2^⌊r/k⌋-th base trigger; ``stop``: no more searches."""

    def __post_init__(self) -> None:
        for name, value, minimum, optional in (
            ("first_trigger", self.first, 1, False),
            ("growth", self.growth, 2, False),
            ("trigger_every", self.every, 1, True),
            ("backoff_after", self.backoff_after, 1, True),
        ):
            if optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                allowed = f"an integer >= {minimum}" + (" or null" if optional else "")
                raise ValueError(f"effopd.{name}={value!r} is invalid: {allowed}")
        if self.backoff not in BACKOFFS:
            raise ValueError(f"effopd.backoff={self.backoff!r} is invalid: choose one of {list(BACKOFFS)}")

    # ------------------------------------------------------------------ base triggers
    def _switch(self) -> tuple[int, int] | None:
        """(S, n(S)): the last geometric trigger and its index, when ``every`` is set."""
        if self.every is None:
            return None
        last, count = self.first, 1
        while last * (self.growth - 1) <= self.every:  # the window last → growth·last fits
            last, count = last * self.growth, count + 1
        return last, count

    def _geometric_count(self, step: int) -> int:
        count, t = 0, self.first
        while t <= step:
            count, t = count + 1, t * self.growth
        return count

    def _count(self, step: int) -> int:
        """n(step): the number of base triggers ≤ ``step``."""
        switch = self._switch()
        if switch is None or step <= switch[0]:
            return self._geometric_count(step)
        return switch[1] + (step - switch[0]) // self.every

    def _base_trigger(self, index: int) -> int:
        """b_index (1-based)."""
        switch = self._switch()
        if switch is not None and index > switch[1]:
            return switch[0] + (index - switch[1]) * self.every
        return self.first * self.growth ** (index - 1)

    def _is_base_trigger(self, step: int) -> bool:
        return step >= 1 and self._count(step) > self._count(step - 1)

    def triggers_up_to(self, last_step: int) -> list[int]:
        """All base triggers ≤ ``last_step`` (no back-off)."""
        return [self._base_trigger(i) for i in range(1, self._count(last_step) + 1)]

    # ------------------------------------------------------------------ back-off
    def backoff_level(self, searches: Sequence[Search]) -> int:
        """j = ⌊r/k⌋ after ``searches`` (r: trailing searches that accepted nothing); 0 without back-off."""
        if self.backoff_after is None:
            return 0
        empty = 0
        for _, alpha in reversed(searches):
            if alpha != 0:
                break
            empty += 1
        return empty // self.backoff_after

    def _stride(self, step: int, searches: Sequence[Search]) -> tuple[int, int] | None:
        """(n(s), 2^j) from the searches before ``step``; None once searching has stopped."""
        before = [s for s in searches if s[0] < step]
        level = self.backoff_level(before)
        if level == 0:
            return 0, 1
        if self.backoff == "stop":
            return None
        return self._count(before[-1][0]), 2**level

    def is_trigger(self, step: int, searches: Sequence[Search] = ()) -> bool:
        """Whether a search runs right after the update of global step ``step``, given the searches before it."""
        stride = self._stride(step, searches)
        if stride is None or not self._is_base_trigger(step):
            return False
        origin, period = stride
        return (self._count(step) - origin) % period == 0

    def next_trigger(self, step: int, searches: Sequence[Search] = ()) -> int | None:
        """The first trigger strictly after ``step`` (``step`` may be 0: nothing done yet), given the searches
        up to and including ``step``; None when the back-off has stopped the searches."""
        stride = self._stride(step + 1, searches)
        if stride is None:
            return None
        origin, period = stride
        index = self._count(step) + 1
        index += (origin - index) % period
        return self._base_trigger(index)


__all__ = ["BACKOFFS", "Search", "TriggerSchedule"]
