"""The geometry of the direction d at a trigger, from what every rank reports of its local shards.

Each rank's :class:`~effopd_verl.core.extrapolation.DirectionStats` holds sums (‖d‖² per parameter,
sampled products of consecutive directions); sums add across ranks, so one gather of those
scalars gives the whole model's figures:

    direction_norm          ‖d_k‖ = √(Σ_ranks Σ_names ‖d‖²)
    direction_cosine        cos(d_k, d_{k−1}) = ⟨d_k, d_{k−1}⟩ / (‖d_k‖·‖d_{k−1}‖) on the sampled elements
    norm_share/<type>       Σ_{names of that module type} ‖d‖² / ‖d_k‖²   (attention, mlp, embedding, other)
    layer_norm/<NNN>        ‖d_k‖ restricted to layer NNN

Example::

    >>> from effopd_verl.core.extrapolation import DirectionStats
    >>> ranks = [DirectionStats({"model.layers.0.mlp.up_proj.weight": 3.0, "model.layers.1.self_attn.q_proj.weight": 1.0}),
    ...          DirectionStats({"model.layers.0.mlp.up_proj.weight": 5.0})]
    >>> m = direction_geometry(ranks)
    >>> m["direction_norm"], m["geometry/norm_share/mlp"], m["geometry/layer_norm/000"]
    (3.0, 0.8888888888888888, 2.8284271247461903)
"""

from __future__ import annotations

import math
from typing import Sequence

from effopd_verl.core.diagnostics import group_squared_norms
from effopd_verl.core.extrapolation import DirectionStats


def direction_geometry(per_rank: Sequence[DirectionStats]) -> dict[str, float]:
    """``direction_norm`` and the ``geometry/*`` figures (module docstring) from every rank's stats."""
    squared: dict[str, float] = {}
    for stats in per_rank:
        for name, value in stats.squared_norms.items():
            squared[name] = squared.get(name, 0.0) + value
    total = sum(squared.values())
    metrics = {"direction_norm": math.sqrt(total)}
    if total > 0:
        for module_type, value in sorted(group_squared_norms(squared, lambda loc: loc.module_type).items()):
            metrics[f"geometry/norm_share/{module_type}"] = value / total
    by_layer = group_squared_norms(squared, lambda loc: loc.layer)
    for layer in sorted(k for k in by_layer if k is not None):
        metrics[f"geometry/layer_norm/{layer:03d}"] = math.sqrt(by_layer[layer])
    if all(s.sample_dot is not None for s in per_rank):
        dot = sum(s.sample_dot for s in per_rank)
        norms = math.sqrt(sum(s.sample_sq for s in per_rank) * sum(s.sample_prev_sq for s in per_rank))
        if norms > 0:
            metrics["geometry/direction_cosine"] = dot / norms
    return metrics
