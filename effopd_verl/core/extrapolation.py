"""Extrapolation of named parameter shards along the training direction, in place, without all-gather.

Notation (per selected parameter, elementwise on the local shard of each rank)::

    θ_anchor   fp32 copy kept between triggers (θ_0 at the start, later the last accepted point)
    θ_t        the parameters right after the optimizer update of trigger step t (kept bit for bit)
    d          = θ_t − θ_anchor                      (computed in fp32, never stored)
    θ(α)       = θ_t + α·d                           (fp32 math, one cast back to the parameter dtype)

Every candidate is computed afresh from (θ_t, θ_anchor), never from the previous candidate, and
``restore`` writes θ_t back bitwise. ``commit(α)`` makes θ(α) the parameters and the new anchor.
Memory held per rank: the fp32 anchor plus the θ_t snapshot, i.e. 2× the local shard for fp32
parameters (plus 1/61 of it for the direction sample below, unless it is switched off); transient
memory is one parameter's worth.

Consecutive directions: ``snapshot`` keeps every 61st element of d (a prime stride, so no alignment
with power-of-two widths) and returns the products ⟨d_k, d_{k−1}⟩, ‖d_k‖², ‖d_{k−1}‖² over those
elements; summed over ranks they give cos(d_k, d_{k−1}) from a fixed systematic sample of 1.6% of
the elements.

The tensors are whatever the caller passes: plain tensors or the local shards of FSDP2 DTensors
(a DTensor is reduced to ``to_local()``, which aliases its storage). Resolve them freshly on every
call (FSDP may re-point storage when it offloads); they are matched by name.

Example::

    >>> import torch
    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> ex = ShardedExtrapolation(selects=lambda name: True)
    >>> ex.set_anchor([("w", w)])                     # θ_anchor = 0
    >>> with torch.no_grad(): _ = w.add_(1.0)         # a training step: θ_t = 1
    >>> ex.snapshot([("w", w)]).squared_norms         # ‖d‖² per name
    {'w': 3.0}
    >>> ex.apply(2.0, [("w", w)]), w.tolist()         # θ_t + 2·d
    (True, [3.0, 3.0, 3.0])
    >>> ex.restore([("w", w)]); w.tolist()
    [1.0, 1.0, 1.0]
    >>> ex.commit(4.0, [("w", w)]); w.tolist()        # accepted: θ = θ_anchor = 5
    [5.0, 5.0, 5.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
from torch.distributed.tensor import DTensor

NamedTensors = Iterable[tuple[str, torch.Tensor]]

DIRECTION_SAMPLE_STRIDE = 61
"""Every 61st element of each local shard of d is kept until the next trigger (see module doc)."""

_SAMPLE_PREFIX = "direction_sample."


@dataclass
class DirectionStats:
    """What ``snapshot`` reports of d_k on this rank; every field adds up across ranks."""

    squared_norms: dict[str, float]
    """‖d_k‖² per parameter name (all elements of the local shard)."""

    sample_dot: float | None = None
    """⟨d_k, d_{k−1}⟩ over the sampled elements; None at the first trigger."""

    sample_sq: float | None = None
    """‖d_k‖² over the sampled elements; None at the first trigger."""

    sample_prev_sq: float | None = None
    """‖d_{k−1}‖² over the sampled elements; None at the first trigger."""


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """The rank-local storage of ``t``: ``to_local()`` for a DTensor, ``t`` itself otherwise."""
    return t.to_local() if isinstance(t, DTensor) else t


class ShardedExtrapolation:
    """Anchor, θ_t snapshot, candidates, restore and commit over named local shards (see module doc)."""

    def __init__(self, selects: Callable[[str], bool], anchor_device: str = "cpu", direction_sample: bool = True) -> None:
        """``selects(name)`` says which parameters take part; ``anchor_device`` is ``cpu`` or ``same``;
        ``direction_sample`` keeps the 1/61 sample of d that gives the cosine of consecutive directions."""
        if anchor_device not in ("cpu", "same"):
            raise ValueError(f"effopd.anchor_device={anchor_device!r} is invalid: choose one of ['cpu', 'same']")
        self._selects = selects
        self._anchor_device = anchor_device
        self._anchor: dict[str, torch.Tensor] = {}
        self._theta_t: dict[str, torch.Tensor] = {}
        self._direction_sample: dict[str, torch.Tensor] = {}
        self._keep_sample = direction_sample

    # ---------------------------------------------------------------- state
    @property
    def matched_names(self) -> list[str]:
        """Names of the parameters that take part, in the order first seen."""
        return list(self._anchor)

    @property
    def has_anchor(self) -> bool:
        return bool(self._anchor)

    @property
    def in_search(self) -> bool:
        """True between ``snapshot`` and ``commit``: θ_t is held and parameters may be a candidate."""
        return bool(self._theta_t)

    def bytes_held(self) -> int:
        """Bytes of the anchor and of the θ_t snapshot held now (the memory EffOPD adds per rank)."""
        tensors = [*self._anchor.values(), *self._theta_t.values(), *self._direction_sample.values()]
        return sum(t.numel() * t.element_size() for t in tensors)

    # ---------------------------------------------------------------- operations
    @torch.no_grad()
    def set_anchor(self, named: NamedTensors) -> None:
        """θ_anchor := the current selected parameters (fp32 copies); forgets the previous direction."""
        self._theta_t, self._direction_sample = {}, {}
        self._anchor = {name: self._copy_to_store(t, torch.float32) for name, t in self._selected(named)}
        if not self._anchor:
            raise ValueError(
                "effopd.param_include/param_exclude select no parameter of this model: "
                "check the patterns against the model's parameter names"
            )

    @torch.no_grad()
    def snapshot(self, named: NamedTensors) -> DirectionStats:
        """θ_t := the current parameters (exact copies); reports d = θ_t − θ_anchor (see DirectionStats).

        One host synchronisation for all names.
        """
        self._require_anchor()
        theta_t, sample, sums = {}, {}, []
        previous = self._direction_sample
        for name, t in self._selected(named, expect=self._anchor):
            theta_t[name] = self._copy_to_store(t, t.dtype)
            d = t.float() - self._anchor[name].to(t.device, non_blocking=True)
            d_sample = d.reshape(-1)[::DIRECTION_SAMPLE_STRIDE]
            prev = previous[name].to(t.device, non_blocking=True) if name in previous else torch.zeros_like(d_sample)
            sums.append(torch.stack([d.square().sum(), d_sample @ prev, d_sample.square().sum(), prev.square().sum()]))
            if self._keep_sample:
                sample[name] = self._copy_to_store(d_sample, torch.float32, like=t)
        self._theta_t, self._direction_sample = theta_t, sample
        table = torch.stack(sums).cpu().tolist() if sums else []
        stats = DirectionStats({name: row[0] for name, row in zip(theta_t, table)})
        if previous:
            stats.sample_dot, stats.sample_sq, stats.sample_prev_sq = (sum(row[i] for row in table) for i in (1, 2, 3))
        return stats

    @torch.no_grad()
    def apply(self, alpha: float, named: NamedTensors) -> bool:
        """Parameters := θ_t + α·d in place; returns whether every element is finite.

        The check costs one host synchronisation: a sum is finite only if every summand is, so
        per-tensor sums decide; only a tensor whose sum is not finite (a NaN/Inf, or a finite overflow)
        is checked element by element.
        """
        self._require_snapshot()
        written = list(self._selected(named, expect=self._theta_t))
        sums = torch.stack([self._write_candidate(alpha, name, t).reshape(()).cpu() for name, t in written])
        suspects = (~torch.isfinite(sums)).nonzero().flatten().tolist()
        return all(bool(torch.isfinite(written[i][1]).all()) for i in suspects)

    @torch.no_grad()
    def restore(self, named: NamedTensors) -> None:
        """Parameters := θ_t, bit for bit."""
        self._require_snapshot()
        for name, t in self._selected(named, expect=self._theta_t):
            t.copy_(self._theta_t[name])

    @torch.no_grad()
    def commit(self, alpha: float, named: NamedTensors) -> None:
        """Parameters := θ(α) (α = 0: θ_t, bit for bit); θ_anchor := those parameters; drop θ_t."""
        self._require_snapshot()
        for name, t in self._selected(named, expect=self._theta_t):
            if alpha == 0:
                t.copy_(self._theta_t[name])
            else:
                self._write_candidate(alpha, name, t)
            self._anchor[name].copy_(t)
        self._theta_t = {}

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        """``{name: anchor}`` and ``{"direction_sample." + name: sample}``, fp32 CPU tensors; only between searches."""
        if self.in_search:
            raise RuntimeError("EffOPD state cannot be saved in the middle of a search: commit first")
        state = {name: a.detach().to("cpu", copy=True) for name, a in self._anchor.items()}
        state.update({_SAMPLE_PREFIX + name: v.detach().to("cpu", copy=True) for name, v in self._direction_sample.items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor], named: NamedTensors) -> None:
        """Restore the anchor (and direction sample) from ``state_dict()``; ``named`` gives the live parameters."""
        live = {name: t for name, t in self._selected(named)}
        samples = {k[len(_SAMPLE_PREFIX) :]: v for k, v in state.items() if k.startswith(_SAMPLE_PREFIX)}
        state = {k: v for k, v in state.items() if not k.startswith(_SAMPLE_PREFIX)}
        if set(live) != set(state):
            missing, extra = sorted(set(live) - set(state)), sorted(set(state) - set(live))
            raise ValueError(
                f"EffOPD anchor does not match the model: missing {missing[:5]}, unexpected {extra[:5]} "
                "(was the checkpoint written with another effopd.param_include/param_exclude or world size?)"
            )
        anchor = {}
        for name, t in live.items():
            saved = state[name]
            if saved.shape != t.shape:
                raise ValueError(
                    f"EffOPD anchor for {name} has shape {tuple(saved.shape)}, the local shard {tuple(t.shape)}: "
                    "resume with the same number of ranks and sharding as the run that saved it"
                )
            anchor[name] = self._copy_to_store(saved, torch.float32, like=t)
        self._anchor, self._theta_t = anchor, {}
        self._direction_sample = {name: self._copy_to_store(v, torch.float32, like=live[name]) for name, v in samples.items()}

    # ---------------------------------------------------------------- internals
    def _selected(self, named: NamedTensors, expect: dict | None = None) -> Iterator[tuple[str, torch.Tensor]]:
        seen = []
        for name, t in named:
            if self._selects(name):
                seen.append(name)
                yield name, local_tensor(t)
        if expect is not None and set(seen) != set(expect):
            missing, extra = sorted(set(expect) - set(seen)), sorted(set(seen) - set(expect))
            raise RuntimeError(f"the selected parameters changed since the anchor was taken: missing {missing[:5]}, new {extra[:5]}")

    def _copy_to_store(self, t: torch.Tensor, dtype: torch.dtype, like: torch.Tensor | None = None) -> torch.Tensor:
        device = (like if like is not None else t).device if self._anchor_device == "same" else torch.device("cpu")
        pin = device.type == "cpu" and (like if like is not None else t).device.type == "cuda"
        out = torch.empty(t.shape, dtype=dtype, device=device, pin_memory=pin)
        out.copy_(t)
        return out

    def _write_candidate(self, alpha: float, name: str, t: torch.Tensor) -> torch.Tensor:
        theta_t = self._theta_t[name].to(t.device, non_blocking=True)
        anchor = self._anchor[name].to(t.device, non_blocking=True)
        # θ_t + α·(θ_t − θ_anchor) = lerp(θ_anchor, θ_t, 1 + α): one pass over the three tensors. For
        # weights ≥ 0.5 torch evaluates lerp as end − (end − start)·(1 − weight) = θ_t + α·d.
        if t.dtype == torch.float32:  # write straight into the parameter: no temporary
            torch.lerp(anchor, theta_t, 1.0 + alpha, out=t)
        else:  # fp32 math, one cast back
            t.copy_(torch.lerp(anchor, theta_t.float(), 1.0 + alpha))
        return t.sum(dtype=torch.float32)

    def _require_anchor(self) -> None:
        if not self._anchor:
            raise RuntimeError("no EffOPD anchor: call set_anchor (or load_state_dict) before a search")

    def _require_snapshot(self) -> None:
        if not self._theta_t:
            raise RuntimeError("no θ_t snapshot: call snapshot() at the trigger step first")
