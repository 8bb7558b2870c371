"""Markdown tables of an ``effopd-analyze`` report next to the EffOPD paper's Table 1
(``effopd-analyze … --paper-table PATH``).

Table 1 of "Learning to Foresee" (arXiv 2605.11739, §3.1): the mean over all MLP and attention
matrices of the update's geometry, OPD vs RL, at four model scales; the bf16 update sparsity is
from the companion OPD parameter-geometry paper (Qwen3-8B, Table 1 there). Ours: the same means
(``aggregates.attention_and_mlp``) and per module type, per checkpoint.
"""

from __future__ import annotations

import math

# (metric key in geometry.json, label, paper values {scale: (rl, opd)}, format)
PAPER_TABLE1 = {
    "spectral_norm": {"1.5B": (0.094, 0.113), "4B": (0.007, 0.009), "8B": (0.004, 0.005), "14B": (0.056, 0.063)},
    "spectral_frobenius_ratio": {"1.5B": (0.332, 0.396), "4B": (0.197, 0.257), "8B": (0.327, 0.368), "14B": (0.244, 0.281)},
    "effective_rank": {"1.5B": (964, 778), "4B": (1908, 1587), "8B": (2754, 2341), "14B": (3174, 2937)},
    "top1pct_norm_ratio": {"1.5B": (0.781, 0.923), "4B": (0.792, 0.934), "8B": (0.885, 0.947), "14B": (0.812, 0.945)},
}
PAPER_SPARSITY_8B = {"SFT": 0.081, "OPD": 0.516, "RLVR (GRPO)": 0.772}  # bf16-aware, Qwen3-8B (companion paper)
METRICS = [
    ("update_norm", "‖ΔW‖_F (root of the summed squares)", "{:.3f}"),
    ("spectral_norm", "spectral norm σ1", "{:.4f}"),
    ("spectral_frobenius_ratio", "spectral / Frobenius ratio", "{:.1%}"),
    ("effective_rank", "effective rank", "{:.1f}"),
    ("top1pct_norm_ratio", "top-1% subspace norm ratio", "{:.1%}"),
    ("bf16_sparsity", "bf16 update sparsity", "{:.1%}"),
    ("alignment_with_final", "top-k alignment with the final update", "{:.3f}"),
]
PERCENT = {"spectral_frobenius_ratio", "top1pct_norm_ratio", "bf16_sparsity"}


def fmt(fmt_str: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt_str.format(v)


def paper_cell(key: str, algorithm: str) -> str:
    """The paper's values of ``key`` at every scale for ``algorithm`` ("opd" or "rl")."""
    if key == "bf16_sparsity":
        return " / ".join(f"{k} {v:.1%}" for k, v in PAPER_SPARSITY_8B.items()) + " (8B)" if algorithm == "opd" else "–"
    row = PAPER_TABLE1.get(key)
    if not row:
        return "–"
    column = 1 if algorithm == "opd" else 0
    return ", ".join(f"{s} {v[column]:.1%}" if key in PERCENT else f"{s} {v[column]:g}" for s, v in row.items())


def paper_tables(geo: dict, label: str = "toy OPD") -> str:
    """The tables for ``geo``, an ``effopd-analyze`` JSON report; ``label`` heads our columns."""
    ckpts = geo["checkpoints"]
    heads = [f"{c['progress']:.0%} (step {c['step']})" if c.get("progress") is not None else c["path"] for c in ckpts]
    out = ["### Attention + MLP matrices (mean over matrices, as Table 1)", "",
           "| metric | " + " | ".join(f"{label} {h}" for h in heads) + " | paper OPD (Table 1) | paper RL (Table 1) |",
           "|---|" + "---|" * (len(heads) + 2)]
    for key, label, f in METRICS:
        vals = [c["aggregates"]["attention_and_mlp"].get(key) for c in ckpts]
        out.append(f"| {label} | " + " | ".join(fmt(f, v) for v in vals) + f" | {paper_cell(key, 'opd')} | {paper_cell(key, 'rl')} |")
    out += ["", "### Per module type", ""]
    types = [t for t in ("attention", "mlp", "embedding") if t in ckpts[-1]["aggregates"]["by_module_type"]]
    out.append("| metric | " + " | ".join(f"{t} {h}" for h in heads for t in types) + " |")
    out.append("|---|" + "---|" * (len(heads) * len(types)))
    for key, label, f in METRICS:
        cells = [fmt(f, c["aggregates"]["by_module_type"][t].get(key)) for c in ckpts for t in types]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "Matrices per type: " + ", ".join(
        f"{t} {ckpts[-1]['aggregates']['by_module_type'][t]['matrices']}" for t in types) + "."]
    return "\n".join(out) + "\n"
