"""Which global steps trigger an EffOPD search: t_k = first·growth^k (1, 2, 4, 8, … by default).

Stateless, so a run resumed at any step asks the same questions and gets the same answers::

    >>> s = TriggerSchedule(first=1, growth=2)
    >>> [t for t in range(1, 20) if s.is_trigger(t)]
    [1, 2, 4, 8, 16]
    >>> s.next_trigger(5)    # resumed after step 5: the next search runs at step 8
    8
    >>> s.next_trigger(0)
    1
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TriggerSchedule:
    """Trigger steps first·growth^k, k = 0, 1, 2, …, over 1-based global steps."""

    first: int = 1
    """The first trigger step (≥ 1)."""

    growth: int = 2
    """Ratio between consecutive triggers (≥ 2)."""

    def __post_init__(self) -> None:
        if isinstance(self.first, bool) or not isinstance(self.first, int) or self.first < 1:
            raise ValueError(f"effopd.first_trigger={self.first!r} is invalid: an integer >= 1")
        if isinstance(self.growth, bool) or not isinstance(self.growth, int) or self.growth < 2:
            raise ValueError(f"effopd.growth={self.growth!r} is invalid: an integer >= 2")

    def is_trigger(self, step: int) -> bool:
        """Whether a search runs right after the update of global step ``step``."""
        if step < self.first or step % self.first:
            return False
        ratio = step // self.first
        while ratio % self.growth == 0:
            ratio //= self.growth
        return ratio == 1

    def next_trigger(self, step: int) -> int:
        """The smallest trigger step strictly greater than ``step`` (``step`` may be 0: nothing done yet)."""
        t = self.first
        while t <= step:
            t *= self.growth
        return t

    def triggers_up_to(self, last_step: int) -> list[int]:
        """All trigger steps ≤ ``last_step``."""
        out, t = [], self.first
        while t <= last_step:
            out.append(t)
            t *= self.growth
        return out
