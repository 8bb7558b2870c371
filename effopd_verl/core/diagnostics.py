"""Update-geometry diagnostics: how and where a training run moved the weights (EffOPD paper, App. F.1).

For one weight matrix, the update is ΔW = W_t − W_base (computed in fp32) with singular values
σ_1 ≥ … ≥ σ_r, r = min(m, n), and ‖ΔW‖_F = √(Σ σ_i²):

- spectral norm                ‖ΔW‖_2 = σ_1
- spectral/Frobenius ratio     σ_1 / ‖ΔW‖_F                       (1 for a rank-1 update, 1/√r for ∝ I)
- effective rank               exp(−Σ p_i log p_i), p_i = σ_i / Σ_j σ_j   (Roy & Vetterli 2007)
- top-1% subspace norm ratio   ‖ΔW_k‖_F / ‖ΔW‖_F = √(Σ_{i≤k} σ_i² / Σ_i σ_i²), k = ⌈r/100⌉,
                               ΔW_k the rank-k truncation
- bf16 update sparsity         fraction of entries whose bf16 value is unchanged:
                               bf16(W_t[i,j]) = bf16(W_base[i,j])
- subspace alignment           for two updates A, B and the top-k left singular vectors U_A, U_B
  (of two updates)             (m×k each): the mean of the cosines of the principal angles between
                               span U_A and span U_B, i.e. the mean singular value of U_Aᵀ U_B
                               (1 for the same subspace, 0 for orthogonal ones). Choose k at most
                               the updates' rank: singular vectors past it are arbitrary.

A metric that needs a non-zero update is ``nan`` for ΔW = 0. Every matrix is a 2-D tensor present
in the base and all updated weights; SVDs run in fp32, one matrix at a time, on ``device`` (the GPU
when one is present). Weights are any ``Mapping[str, Tensor]``: a state dict, or
:class:`~effopd_verl.core.weight_files.SafetensorsWeights` reading one tensor at a time.

Parameters are located by name (:func:`classify_parameter`) to aggregate per module type and per
layer; :func:`group_squared_norms` does the same for squared norms a trainer computed on local
shards (sum, all-reduce, then take shares).

Example: a rank-1 update is fully concentrated in its top direction::

    >>> import torch
    >>> stats = matrix_update_stats(torch.zeros(4, 3), torch.outer(torch.ones(4), torch.ones(3)))
    >>> [round(v, 4) for v in (stats.spectral_norm, stats.spectral_frobenius_ratio, stats.effective_rank)]
    [3.4641, 1.0, 1.0]
    >>> classify_parameter("model.layers.3.mlp.gate_proj.weight")
    ParameterLocation(module_type='mlp', layer=3)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import torch

from effopd_verl.core.weight_files import tensor_shapes

ATTENTION, MLP, EMBEDDING, OTHER = "attention", "mlp", "embedding", "other"
MODULE_TYPES = (ATTENTION, MLP, EMBEDDING, OTHER)
DEFAULT_ALIGNMENT_RANK = 16  # the geometry paper's top-16 subspace similarity

_ATTENTION_PARTS = {
    "self_attn", "attn", "attention", "self_attention", "cross_attn", "q_proj", "k_proj", "v_proj",
    "o_proj", "qkv_proj", "query_key_value", "c_attn",
}
_MLP_PARTS = {
    "mlp", "feed_forward", "ffn", "experts", "shared_expert", "block_sparse_moe", "gate_proj",
    "up_proj", "down_proj", "gate_up_proj", "c_fc",
}
_EMBEDDING_PARTS = {"embed_tokens", "lm_head", "wte", "wpe", "embed_positions", "word_embeddings", "embed_out"}
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)(?:\.|$)")


@dataclass(frozen=True)
class ParameterLocation:
    """Where a parameter sits: its module type (one of :data:`MODULE_TYPES`) and decoder layer."""

    module_type: str
    layer: int | None


def classify_parameter(name: str) -> ParameterLocation:
    """Locate a parameter by its (HF-style) name.

    The module type is ``attention`` or ``mlp`` when a dotted part of the name is an attention or MLP
    block or projection (``self_attn``, ``q_proj``, ``mlp``, ``gate_proj``, ``experts``, …),
    ``embedding`` for input/output embeddings (``embed_tokens``, ``lm_head``, ``wte``, …), else
    ``other`` (norms, …). The layer is N in ``layers.N.`` (or ``h.N.``, ``blocks.N.``), else None.

    >>> classify_parameter("model.layers.0.self_attn.q_proj.weight")
    ParameterLocation(module_type='attention', layer=0)
    >>> classify_parameter("lm_head.weight"), classify_parameter("model.norm.weight")
    (ParameterLocation(module_type='embedding', layer=None), ParameterLocation(module_type='other', layer=None))
    """
    parts = set(name.split("."))
    if parts & _ATTENTION_PARTS:
        module_type = ATTENTION
    elif parts & _MLP_PARTS:
        module_type = MLP
    elif parts & _EMBEDDING_PARTS:
        module_type = EMBEDDING
    else:
        module_type = OTHER
    layer = _LAYER_INDEX.search(name)
    return ParameterLocation(module_type, int(layer.group(1)) if layer else None)


def group_squared_norms(
    squared_norms: Mapping[str, float], group: Callable[[ParameterLocation], Hashable]
) -> dict[Hashable, float]:
    """Sum per-parameter squared norms by ``group(classify_parameter(name))``.

    Squared norms add across parameters and across shards, so a trainer can sum its local shards,
    all-reduce the sums, and take ‖d_g‖ = √s_g and shares s_g / Σ s.

    >>> group_squared_norms({"model.layers.0.mlp.up_proj.weight": 3.0,
    ...                      "model.layers.1.mlp.up_proj.weight": 1.0}, lambda loc: loc.module_type)
    {'mlp': 4.0}
    """
    sums: dict[Hashable, float] = {}
    for name, value in squared_norms.items():
        key = group(classify_parameter(name))
        sums[key] = sums.get(key, 0.0) + value
    return sums


@dataclass(frozen=True)
class SpectralStats:
    """The spectrum-derived metrics of one update (see the module docstring for the math)."""

    frobenius_norm: float
    spectral_norm: float
    spectral_frobenius_ratio: float
    effective_rank: float
    top1pct_norm_ratio: float


def spectral_stats(singular_values: torch.Tensor) -> SpectralStats:
    """Metrics from all r singular values of ΔW (any order), computed in float64.

    >>> s = spectral_stats(torch.ones(300))          # ΔW ∝ an orthogonal matrix, r = 300, k = 3
    >>> round(s.effective_rank, 6), round(s.top1pct_norm_ratio ** 2, 6)
    (300.0, 0.01)
    """
    sigma = singular_values.detach().to("cpu", torch.float64).flatten().sort(descending=True).values
    energy = sigma.square()
    frobenius = math.sqrt(energy.sum().item())
    if frobenius == 0.0:
        return SpectralStats(0.0, 0.0, math.nan, math.nan, math.nan)
    p = sigma / sigma.sum()
    p = p[p > 0]
    top_k = -(-sigma.numel() // 100)  # ⌈r/100⌉ in integers
    return SpectralStats(
        frobenius_norm=frobenius,
        spectral_norm=sigma[0].item(),
        spectral_frobenius_ratio=sigma[0].item() / frobenius,
        effective_rank=math.exp(-(p * p.log()).sum().item()),
        top1pct_norm_ratio=math.sqrt(energy[:top_k].sum().item()) / frobenius,
    )


def bf16_sparsity(base: torch.Tensor, updated: torch.Tensor) -> float:
    """Fraction of entries whose bf16 representation is unchanged: mean of bf16(W_t) == bf16(W_base)."""
    if base.shape != updated.shape:
        raise ValueError(f"shapes differ: base {tuple(base.shape)}, updated {tuple(updated.shape)}")
    unchanged = base.to(torch.bfloat16) == updated.to(device=base.device, dtype=torch.bfloat16)
    return unchanged.float().mean().item()


@dataclass(frozen=True)
class MatrixUpdateStats(SpectralStats):
    """The metrics of one weight matrix's update ΔW = W_t − W_base."""

    bf16_sparsity: float


def default_device() -> torch.device:
    """The GPU when one is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def update_matrix(base: torch.Tensor, updated: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """ΔW = W_t − W_base in fp32 on ``device``."""
    device = device or default_device()
    return updated.to(device, torch.float32) - base.to(device, torch.float32)


def matrix_update_stats(
    base: torch.Tensor, updated: torch.Tensor, device: torch.device | None = None
) -> MatrixUpdateStats:
    """All single-update metrics of one matrix (fp32 SVD via ``torch.linalg.svdvals``)."""
    device = device or default_device()
    singular_values = torch.linalg.svdvals(update_matrix(base, updated, device))
    return _matrix_stats(singular_values, base.to(device), updated)


def _matrix_stats(singular_values: torch.Tensor, base: torch.Tensor, updated: torch.Tensor) -> MatrixUpdateStats:
    return MatrixUpdateStats(**vars(spectral_stats(singular_values)), bf16_sparsity=bf16_sparsity(base, updated))


def top_left_singular_vectors(delta: torch.Tensor, rank: int) -> torch.Tensor:
    """The top-``rank`` left singular vectors of ``delta`` (m × min(rank, m, n)), fp32 SVD."""
    u, _, _ = torch.linalg.svd(delta.float(), full_matrices=False)
    return u[:, : min(rank, u.shape[1])]


def subspace_alignment(u_a: torch.Tensor, u_b: torch.Tensor) -> float:
    """Mean cosine of the principal angles between span(u_a) and span(u_b) (orthonormal columns).

    The cosines are the singular values of u_aᵀ u_b (Björck & Golub 1973).
    """
    cosines = torch.linalg.svdvals(u_a.T.double() @ u_b.double()).clamp(max=1.0)
    return cosines.mean().item()


def update_alignment(delta_a: torch.Tensor, delta_b: torch.Tensor, rank: int = DEFAULT_ALIGNMENT_RANK) -> float:
    """Top-``rank`` left-subspace alignment of two updates; ``nan`` if either is zero."""
    if not delta_a.any() or not delta_b.any():
        return math.nan
    return subspace_alignment(top_left_singular_vectors(delta_a, rank), top_left_singular_vectors(delta_b, rank))


def common_matrix_names(base: Mapping[str, torch.Tensor], others: Mapping[str, Mapping[str, torch.Tensor]]) -> list[str]:
    """The 2-D tensors of ``base`` that every weights source in ``others`` (label → weights) holds.

    Raises ValueError naming the label when a shared tensor's shape differs, or when no matrix is
    shared at all.
    """
    base_shapes = tensor_shapes(base)
    names = [name for name, shape in base_shapes.items() if len(shape) == 2]
    for label, weights in others.items():
        shapes = tensor_shapes(weights)
        for name in names:
            if name in shapes and shapes[name] != base_shapes[name]:
                raise ValueError(
                    f"{label}: {name} has shape {shapes[name]} but {base_shapes[name]} in the base; "
                    "compare checkpoints of the same architecture as the base"
                )
        names = [name for name in names if name in shapes]
        if not names:
            raise ValueError(
                f"{label} shares no weight matrix with the base (no common 2-D parameter names); "
                "compare checkpoints of the same model, saved with the same parameter names"
            )
    return names


@dataclass(frozen=True)
class GroupSummary:
    """Aggregate of a group of matrices' updates.

    ``update_norm`` = √(Σ‖ΔW‖_F²) over the group; the four spectral metrics and the alignment are
    means over matrices (zero updates, whose metrics are nan, left out); ``bf16_sparsity`` is the
    fraction of all the group's entries unchanged in bf16.
    """

    matrices: int
    entries: int
    update_norm: float
    spectral_norm: float
    spectral_frobenius_ratio: float
    effective_rank: float
    top1pct_norm_ratio: float
    bf16_sparsity: float
    alignment_with_final: float


def summarize(
    stats: Mapping[str, MatrixUpdateStats],
    shapes: Mapping[str, tuple[int, ...]],
    alignment: Mapping[str, float] | None = None,
) -> GroupSummary:
    """:class:`GroupSummary` of the matrices in ``stats`` (``alignment``: name → alignment)."""
    entries = {name: math.prod(shapes[name]) for name in stats}
    total = sum(entries.values())

    def mean(values: Iterable[float]) -> float:
        kept = [v for v in values if not math.isnan(v)]
        return sum(kept) / len(kept) if kept else math.nan

    return GroupSummary(
        matrices=len(stats),
        entries=total,
        update_norm=math.sqrt(sum(s.frobenius_norm**2 for s in stats.values())),
        spectral_norm=mean(s.spectral_norm for s in stats.values()),
        spectral_frobenius_ratio=mean(s.spectral_frobenius_ratio for s in stats.values()),
        effective_rank=mean(s.effective_rank for s in stats.values()),
        top1pct_norm_ratio=mean(s.top1pct_norm_ratio for s in stats.values()),
        bf16_sparsity=sum(s.bf16_sparsity * entries[n] for n, s in stats.items()) / total if total else math.nan,
        alignment_with_final=mean((alignment or {}).get(name, math.nan) for name in stats),
    )


@dataclass(frozen=True)
class UpdateAggregates:
    """A checkpoint's update summarized over matrix groups.

    ``attention_and_mlp`` is the paper's Table 1 population; ``by_layer[layer][module_type]``
    covers matrices inside decoder layers.
    """

    all_matrices: GroupSummary
    attention_and_mlp: GroupSummary | None
    by_module_type: dict[str, GroupSummary]
    by_layer: dict[int, dict[str, GroupSummary]]


def aggregate(
    stats: Mapping[str, MatrixUpdateStats],
    shapes: Mapping[str, tuple[int, ...]],
    alignment: Mapping[str, float] | None = None,
) -> UpdateAggregates:
    """Summaries of ``stats`` per module type, per layer and module type, and overall."""
    locations = {name: classify_parameter(name) for name in stats}

    def summaries_by(key: Callable[[ParameterLocation], Hashable | None]) -> dict[Hashable, GroupSummary]:
        groups: dict[Hashable, dict[str, MatrixUpdateStats]] = {}
        for name, matrix_stats in stats.items():
            group = key(locations[name])
            if group is not None:
                groups.setdefault(group, {})[name] = matrix_stats
        return {group: summarize(members, shapes, alignment) for group, members in sorted(groups.items())}

    by_type = summaries_by(lambda loc: loc.module_type)
    by_layer: dict[int, dict[str, GroupSummary]] = {}
    for (layer, module_type), summary in summaries_by(
        lambda loc: None if loc.layer is None else (loc.layer, loc.module_type)
    ).items():
        by_layer.setdefault(layer, {})[module_type] = summary
    attention_and_mlp = summaries_by(lambda loc: loc.module_type in (ATTENTION, MLP) or None)
    return UpdateAggregates(
        all_matrices=summarize(stats, shapes, alignment),
        attention_and_mlp=attention_and_mlp.get(True),
        by_module_type={t: by_type[t] for t in MODULE_TYPES if t in by_type},
        by_layer=by_layer,
    )


@dataclass
class CheckpointGeometry:
    """One checkpoint's update: per-matrix metrics and alignment with the final update."""

    label: str
    matrices: dict[str, MatrixUpdateStats] = field(default_factory=dict)
    alignment_with_final: dict[str, float] = field(default_factory=dict)


def analyze_updates(
    base: Mapping[str, torch.Tensor],
    checkpoints: Mapping[str, Mapping[str, torch.Tensor]],
    final: Mapping[str, torch.Tensor],
    *,
    names: Iterable[str] | None = None,
    alignment_rank: int = DEFAULT_ALIGNMENT_RANK,
    device: torch.device | None = None,
    progress: Callable[[Iterable[str]], Iterable[str]] = iter,
) -> dict[str, CheckpointGeometry]:
    """Metrics of every checkpoint's update (label → weights) and its alignment with ``final``'s.

    Matrix by matrix (``names``, default :func:`common_matrix_names`): the base tensor, the final
    update's top-``alignment_rank`` left singular vectors, then one checkpoint's update at a time
    (one fp32 ``torch.linalg.svd`` each) are all that is on ``device`` at once. ``final`` may be one
    of the checkpoints' weights (the same object), read once. ``progress`` wraps the name iterable
    (e.g. ``tqdm``).
    """
    device = device or default_device()
    if names is None:
        names = common_matrix_names(base, {**checkpoints, "final": final})
    results = {label: CheckpointGeometry(label) for label in checkpoints}
    for name in progress(list(names)):
        base_matrix = base[name].to(device)

        def svd_of_update(updated: torch.Tensor) -> tuple[MatrixUpdateStats, torch.Tensor | None]:
            u, singular_values, _ = torch.linalg.svd(update_matrix(base_matrix, updated, device), full_matrices=False)
            top_u = u[:, :alignment_rank].clone() if singular_values.any() else None
            return _matrix_stats(singular_values, base_matrix, updated), top_u

        final_stats, final_u = svd_of_update(final[name])
        for label, weights in checkpoints.items():
            stats, u = (final_stats, final_u) if weights is final else svd_of_update(weights[name])
            results[label].matrices[name] = stats
            results[label].alignment_with_final[name] = (
                math.nan if u is None or final_u is None else subspace_alignment(u, final_u)
            )
    return results


def rescale_update(base: torch.Tensor, early: torch.Tensor, final: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The paper's module-wise norm rescaling of one parameter: W_base + λ·ΔW_early, λ = ‖ΔW_final‖_F / ‖ΔW_early‖_F.

    The early update keeps its direction and gets the final update's norm (fp32 math, result in
    ``base``'s dtype). A zero early update has no direction: the base is returned with λ = nan.
    Non-floating tensors are returned unchanged (λ = nan).
    """
    if not base.is_floating_point():
        return base, math.nan
    early_delta = early.float() - base.float()
    early_norm = torch.linalg.vector_norm(early_delta).item()
    if early_norm == 0.0:
        return base, math.nan
    scale = torch.linalg.vector_norm(final.float() - base.float()).item() / early_norm
    return (base.float() + scale * early_delta).to(base.dtype), scale


def check_same_parameters(base: Mapping[str, torch.Tensor], others: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Raise ValueError naming the label (of ``others``, label → weights) that lacks a base parameter or
    holds one with another shape."""
    base_shapes = tensor_shapes(base)
    for label, weights in others.items():
        shapes = tensor_shapes(weights)
        missing = [name for name in base_shapes if name not in shapes]
        if missing:
            raise ValueError(
                f"{label} lacks {len(missing)} parameter(s) of the base, e.g. {missing[0]}; "
                "rescaling needs checkpoints holding every parameter of the base"
            )
        for name, shape in base_shapes.items():
            if shapes[name] != shape:
                raise ValueError(
                    f"{label}: {name} has shape {shapes[name]} but {shape} in the base; "
                    "compare checkpoints of the same architecture as the base"
                )


def rescaled_weights(
    base: Mapping[str, torch.Tensor], early: Mapping[str, torch.Tensor], final: Mapping[str, torch.Tensor],
    scales: dict[str, float] | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Every base parameter, with the early update rescaled per parameter (:func:`rescale_update`).

    Yields (name, tensor) one at a time; records each λ in ``scales`` when given.
    """
    for name in base:
        tensor, scale = rescale_update(base[name], early[name], final[name])
        if scales is not None:
            scales[name] = scale
        yield name, tensor
