"""The two PNGs of ``effopd-analyze``: update norm per layer, and alignment with the final update."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from effopd_verl.core.diagnostics import ATTENTION, EMBEDDING, MLP, MODULE_TYPES, UpdateAggregates


def plot_update_norm_by_layer(labels: Sequence[str], aggregates: Sequence[UpdateAggregates], path: Path) -> Path:
    """One panel per module type found in decoder layers: ‖ΔW‖_F of that type per layer, a line per checkpoint."""
    types = [t for t in MODULE_TYPES if any(t in by_type for a in aggregates for by_type in a.by_layer.values())]
    figure = Figure(figsize=(5 * max(len(types), 1), 4), layout="constrained")
    axes = figure.subplots(1, max(len(types), 1), squeeze=False)[0]
    for ax, module_type in zip(axes, types):
        for i, (label, aggregate) in enumerate(zip(labels, aggregates)):
            layers = [layer for layer, by_type in aggregate.by_layer.items() if module_type in by_type]
            norms = [aggregate.by_layer[layer][module_type].update_norm for layer in layers]
            color = colormaps["viridis"](0.9 * i / max(len(labels) - 1, 1))  # early dark, late light
            ax.plot(layers, norms, marker="o", markersize=3, color=color, label=label)
        ax.set_title(f"{module_type}: update norm per layer")
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"‖ΔW‖_F over the layer's {module_type} matrices")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    figure.savefig(path, dpi=120)
    return path


def plot_alignment_with_final(
    progress: Sequence[float], progress_label: str, aggregates: Sequence[UpdateAggregates], rank: int, path: Path
) -> Path:
    """Mean top-``rank`` subspace alignment with the final update against training progress, per module type."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    ax = figure.subplots()
    series = {"attention + MLP": [a.attention_and_mlp for a in aggregates]}
    for module_type in (ATTENTION, MLP, EMBEDDING):
        series[module_type] = [a.by_module_type.get(module_type) for a in aggregates]
    for name, summaries in series.items():
        values = [math.nan if s is None else s.alignment_with_final for s in summaries]
        if not all(math.isnan(v) for v in values):
            ax.plot(progress, values, marker="o", label=name, linewidth=2.5 if name == "attention + MLP" else 1.2)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel(progress_label)
    ax.set_ylabel(f"mean cos of top-{rank} principal angles")
    ax.set_title("alignment of each checkpoint's update with the final update")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    figure.savefig(path, dpi=120)
    return path

