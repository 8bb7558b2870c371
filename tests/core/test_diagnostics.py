"""Update-geometry metrics against numpy/scipy references on matrices with known spectra."""

import doctest
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from effopd_verl.core import diagnostics
from effopd_verl.core.diagnostics import (
    ParameterLocation,
    aggregate,
    analyze_updates,
    bf16_sparsity,
    check_same_parameters,
    classify_parameter,
    common_matrix_names,
    group_squared_norms,
    matrix_update_stats,
    rescale_update,
    rescaled_weights,
    spectral_stats,
    update_alignment,
)

CPU = torch.device("cpu")


def reference_metrics(delta: np.ndarray) -> dict:
    """The paper's definitions in float64 numpy/scipy."""
    sigma = scipy.linalg.svdvals(delta.astype(np.float64))
    frobenius = np.linalg.norm(delta.astype(np.float64))
    k = math.ceil(len(sigma) / 100)
    return {
        "spectral_norm": np.linalg.norm(delta.astype(np.float64), 2),
        "spectral_frobenius_ratio": sigma[0] / frobenius,
        "effective_rank": math.exp(scipy.stats.entropy(sigma / sigma.sum())),
        "top1pct_norm_ratio": np.linalg.norm(sigma[:k]) / frobenius,
    }


def with_spectrum(rng: np.random.Generator, m: int, n: int, sigma: np.ndarray) -> np.ndarray:
    """U diag(σ) Vᵀ with random orthonormal U (m×r) and V (n×r)."""
    r = len(sigma)
    u = scipy.stats.ortho_group.rvs(m, random_state=rng)[:, :r]
    v = scipy.stats.ortho_group.rvs(n, random_state=rng)[:, :r]
    return (u * sigma) @ v.T


def stats_of_update(rng, delta: np.ndarray):
    base = rng.standard_normal(delta.shape).astype(np.float32)
    updated = (base.astype(np.float64) + delta).astype(np.float32)
    stats = matrix_update_stats(torch.from_numpy(base), torch.from_numpy(updated), CPU)
    return stats, updated.astype(np.float64) - base.astype(np.float64)


@pytest.mark.parametrize("rank", [1, 3, 10])
def test_exact_rank_k_update_matches_scipy_and_its_known_spectrum(rank):
    rng = np.random.default_rng(rank)
    sigma = np.linspace(5.0, 1.0, rank)
    stats, delta = stats_of_update(rng, with_spectrum(rng, 150, 120, sigma))
    reference = reference_metrics(delta)
    for key, value in reference.items():
        assert getattr(stats, key) == pytest.approx(value, rel=1e-4), key
    # the known spectrum: k = ⌈120/100⌉ = 2 top directions
    assert stats.spectral_norm == pytest.approx(5.0, rel=1e-4)
    assert stats.spectral_frobenius_ratio == pytest.approx(5.0 / np.linalg.norm(sigma), rel=1e-4)
    assert stats.top1pct_norm_ratio == pytest.approx(np.linalg.norm(sigma[:2]) / np.linalg.norm(sigma), rel=1e-4)
    assert stats.effective_rank == pytest.approx(math.exp(scipy.stats.entropy(sigma)), rel=1e-3)


def test_update_proportional_to_identity_spreads_evenly():
    n = 300  # k = 3
    stats = matrix_update_stats(torch.zeros(n, n), 0.5 * torch.eye(n), CPU)
    assert stats.spectral_norm == pytest.approx(0.5)
    assert stats.frobenius_norm == pytest.approx(0.5 * math.sqrt(n))
    assert stats.spectral_frobenius_ratio == pytest.approx(1 / math.sqrt(n))
    assert stats.effective_rank == pytest.approx(n, rel=1e-6)
    assert stats.top1pct_norm_ratio == pytest.approx(math.sqrt(3 / n))
    assert stats.bf16_sparsity == pytest.approx(1 - 1 / n)


@pytest.mark.parametrize("shape", [(64, 200), (200, 64), (401, 401)])
def test_random_update_matches_scipy(shape):
    rng = np.random.default_rng(sum(shape))
    stats, delta = stats_of_update(rng, 0.1 * rng.standard_normal(shape))
    for key, value in reference_metrics(delta).items():
        assert getattr(stats, key) == pytest.approx(value, rel=1e-4), key


@pytest.mark.parametrize("r, k", [(1, 1), (99, 1), (100, 1), (101, 2), (300, 3), (301, 4)])
def test_top1pct_keeps_ceil_of_one_percent_of_the_spectrum(r, k):
    sigma = torch.ones(r)
    assert spectral_stats(sigma).top1pct_norm_ratio == pytest.approx(math.sqrt(k / r))


def test_zero_update_has_zero_norms_and_undefined_shape_metrics():
    w = torch.randn(8, 5)
    stats = matrix_update_stats(w, w.clone(), CPU)
    assert (stats.frobenius_norm, stats.spectral_norm, stats.bf16_sparsity) == (0.0, 0.0, 1.0)
    assert all(math.isnan(v) for v in (stats.spectral_frobenius_ratio, stats.effective_rank, stats.top1pct_norm_ratio))


def numpy_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bf16 (nearest, ties to even) by bit manipulation; returns the upper 16 bits."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def test_bf16_sparsity_on_constructed_changes():
    base = torch.ones(4, 250)  # bf16 spacing at 1.0 is 2⁻⁷ ≈ 0.0078
    updated = base.clone()
    updated[0] += 1e-4  # below half the bf16 spacing: unchanged in bf16
    updated[1] -= 1e-3
    updated[2, :50] += 0.01  # changed: 1.01 → 1.0078 in bf16
    updated[3, :25] = -1.0
    assert bf16_sparsity(base, updated) == pytest.approx(1 - 75 / 1000)
    # identical results whether the tensors are stored in fp32 or in bf16
    assert bf16_sparsity(base.bfloat16(), updated.bfloat16()) == pytest.approx(1 - 75 / 1000)
    # in fp32 all 575 touched entries changed; only the 75 bf16-visible changes count
    assert (updated != base).float().mean().item() == pytest.approx(575 / 1000)


def test_bf16_sparsity_on_random_updates_matches_a_bit_level_reference():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((64, 96)).astype(np.float32)
    updated = base + (rng.standard_normal(base.shape) * 3e-3 * np.abs(base)).astype(np.float32)
    reference = np.mean(numpy_bf16(base) == numpy_bf16(updated))
    assert 0.2 < reference < 0.9
    assert bf16_sparsity(torch.from_numpy(base), torch.from_numpy(updated)) == pytest.approx(reference)


def test_alignment_of_identical_scaled_and_orthogonal_updates():
    rng = np.random.default_rng(1)
    delta = torch.from_numpy(with_spectrum(rng, 40, 30, np.array([4.0, 3.0, 2.0, 1.0]))).float()
    assert update_alignment(delta, delta, rank=4) == pytest.approx(1.0, abs=1e-5)
    assert update_alignment(delta, -3.0 * delta, rank=4) == pytest.approx(1.0, abs=1e-5)
    first, second = torch.zeros(40, 30), torch.zeros(40, 30)
    first[:4, :4] = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0]))
    second[4:8, :4] = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0]))
    assert update_alignment(first, second, rank=4) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(update_alignment(first, torch.zeros(40, 30), rank=4))


def test_alignment_is_the_mean_cosine_of_scipy_principal_angles():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((50, 20)), rng.standard_normal((50, 20))
    b = 0.5 * a + b  # partly aligned
    k = 5
    top_a = np.linalg.svd(a)[0][:, :k]
    top_b = np.linalg.svd(b)[0][:, :k]
    reference = np.mean(np.cos(scipy.linalg.subspace_angles(top_a, top_b)))
    assert 0.1 < reference < 0.99
    assert update_alignment(torch.from_numpy(a), torch.from_numpy(b), rank=k) == pytest.approx(reference, abs=1e-5)


@pytest.mark.parametrize(
    "name, location",
    [
        ("model.layers.0.self_attn.q_proj.weight", ParameterLocation("attention", 0)),
        ("model.layers.11.self_attn.o_proj.weight", ParameterLocation("attention", 11)),
        ("model.layers.2.self_attn.k_norm.weight", ParameterLocation("attention", 2)),
        ("model.layers.3.mlp.gate_proj.weight", ParameterLocation("mlp", 3)),
        ("model.layers.3.mlp.down_proj.weight", ParameterLocation("mlp", 3)),
        ("model.layers.4.mlp.experts.7.up_proj.weight", ParameterLocation("mlp", 4)),
        ("model.embed_tokens.weight", ParameterLocation("embedding", None)),
        ("lm_head.weight", ParameterLocation("embedding", None)),
        ("model.layers.5.input_layernorm.weight", ParameterLocation("other", 5)),
        ("model.norm.weight", ParameterLocation("other", None)),
        ("transformer.h.7.attn.c_attn.weight", ParameterLocation("attention", 7)),
        ("transformer.h.7.mlp.c_fc.weight", ParameterLocation("mlp", 7)),
        ("transformer.wte.weight", ParameterLocation("embedding", None)),
    ],
)
def test_classify_parameter_by_hf_names(name, location):
    assert classify_parameter(name) == location


def test_group_squared_norms_per_module_type_and_layer_group():
    squared = {
        "model.layers.0.self_attn.q_proj.weight": 1.0,
        "model.layers.0.mlp.up_proj.weight": 2.0,
        "model.layers.5.mlp.down_proj.weight": 4.0,
        "model.embed_tokens.weight": 8.0,
        "model.norm.weight": 16.0,
    }
    assert group_squared_norms(squared, lambda loc: loc.module_type) == {
        "attention": 1.0, "mlp": 6.0, "embedding": 8.0, "other": 16.0,
    }
    by_half = group_squared_norms(squared, lambda loc: None if loc.layer is None else loc.layer // 4)
    assert by_half == {0: 3.0, 1: 4.0, None: 24.0}


def fake_stats(frobenius, spectral_ratio, sparsity):
    return diagnostics.MatrixUpdateStats(
        frobenius_norm=frobenius, spectral_norm=frobenius * spectral_ratio,
        spectral_frobenius_ratio=spectral_ratio, effective_rank=1 / spectral_ratio,
        top1pct_norm_ratio=spectral_ratio, bf16_sparsity=sparsity,
    )


def test_aggregate_per_module_type_and_layer():
    stats = {
        "model.layers.0.self_attn.q_proj.weight": fake_stats(3.0, 0.5, 0.5),
        "model.layers.0.mlp.gate_proj.weight": fake_stats(4.0, 0.25, 1.0),
        "model.layers.1.self_attn.q_proj.weight": fake_stats(4.0, 1.0, 0.0),
        "model.layers.1.mlp.gate_proj.weight": diagnostics.MatrixUpdateStats(0.0, 0.0, math.nan, math.nan, math.nan, 1.0),
        "model.embed_tokens.weight": fake_stats(12.0, 0.1, 0.25),
        "lm_head.weight": fake_stats(5.0, 0.1, 0.75),
    }
    shapes = {name: (10, 10) for name in stats}
    shapes["model.layers.0.mlp.gate_proj.weight"] = (10, 30)
    alignment = {"model.layers.0.self_attn.q_proj.weight": 0.9, "model.layers.1.self_attn.q_proj.weight": 0.5}
    result = aggregate(stats, shapes, alignment)

    assert list(result.by_module_type) == ["attention", "mlp", "embedding"]
    attention = result.by_module_type["attention"]
    assert (attention.matrices, attention.entries, attention.update_norm) == (2, 200, 5.0)
    assert attention.spectral_frobenius_ratio == pytest.approx(0.75)
    assert attention.alignment_with_final == pytest.approx(0.7)
    assert attention.bf16_sparsity == pytest.approx(0.25)
    mlp = result.by_module_type["mlp"]
    assert mlp.update_norm == 4.0 and mlp.spectral_frobenius_ratio == 0.25  # the zero update is left out
    assert mlp.bf16_sparsity == pytest.approx((300 * 1.0 + 100 * 1.0) / 400)
    assert math.isnan(mlp.alignment_with_final)
    assert result.by_module_type["embedding"].update_norm == pytest.approx(13.0)

    assert sorted(result.by_layer) == [0, 1]
    assert result.by_layer[0]["attention"].update_norm == 3.0
    assert result.by_layer[0]["mlp"].entries == 300
    assert result.by_layer[1]["mlp"].update_norm == 0.0
    both = result.attention_and_mlp
    assert both.matrices == 4 and both.update_norm == pytest.approx(math.sqrt(9 + 16 + 16))
    assert both.spectral_frobenius_ratio == pytest.approx((0.5 + 0.25 + 1.0) / 3)
    assert result.all_matrices.update_norm == pytest.approx(math.sqrt(9 + 16 + 16 + 144 + 25))


def toy_state(rng, shapes):
    return {name: torch.from_numpy(rng.standard_normal(shape).astype(np.float32)) for name, shape in shapes.items()}


SHAPES = {
    "model.embed_tokens.weight": (50, 16),
    "model.layers.0.self_attn.q_proj.weight": (16, 16),
    "model.layers.0.mlp.up_proj.weight": (32, 16),
    "model.layers.0.input_layernorm.weight": (16,),
}


def test_analyze_updates_follows_the_final_direction_matrix_by_matrix():
    rng = np.random.default_rng(3)
    base = toy_state(rng, SHAPES)
    final_delta = {name: 0.1 * t for name, t in toy_state(rng, SHAPES).items()}
    final = {name: base[name] + final_delta[name] for name in base}
    half = {name: base[name] + 0.5 * final_delta[name] for name in base}
    other = {name: base[name] + 0.1 * t for name, t in toy_state(rng, SHAPES).items()}
    unchanged = {name: t.clone() for name, t in base.items()}
    seen = []
    result = analyze_updates(
        base, {"half": half, "other": other, "unchanged": unchanged, "final": final}, final,
        alignment_rank=4, device=CPU, progress=lambda names: seen.extend(names) or names,
    )
    matrices = [n for n, s in SHAPES.items() if len(s) == 2]
    assert seen == matrices and list(result) == ["half", "other", "unchanged", "final"]
    for name in matrices:
        assert result["final"].alignment_with_final[name] == pytest.approx(1.0, abs=1e-5)
        assert result["half"].alignment_with_final[name] == pytest.approx(1.0, abs=1e-4)
        assert result["other"].alignment_with_final[name] < 0.95
        assert math.isnan(result["unchanged"].alignment_with_final[name])
        assert result["half"].matrices[name].frobenius_norm == pytest.approx(
            0.5 * result["final"].matrices[name].frobenius_norm, rel=1e-4
        )
        expected = matrix_update_stats(base[name], other[name], CPU)
        assert result["other"].matrices[name].effective_rank == pytest.approx(expected.effective_rank, rel=1e-5)
        assert result["other"].alignment_with_final[name] == pytest.approx(
            update_alignment(other[name] - base[name], final_delta[name], rank=4), abs=1e-4
        )


def test_common_matrix_names_skip_vectors_and_missing_names_and_name_mismatches():
    rng = np.random.default_rng(4)
    base = toy_state(rng, SHAPES)
    partial = {k: v for k, v in base.items() if "embed" not in k}
    assert common_matrix_names(base, {"a": base, "b": partial}) == [
        "model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight",
    ]
    wrong = dict(base, **{"model.layers.0.mlp.up_proj.weight": torch.zeros(16, 32)})
    with pytest.raises(ValueError, match=r"CKPT x: model.layers.0.mlp.up_proj.weight has shape \(16, 32\) but \(32, 16\)"):
        common_matrix_names(base, {"CKPT x": wrong})
    renamed = {"module." + k: v for k, v in base.items()}
    with pytest.raises(ValueError, match="CKPT y shares no weight matrix with the base"):
        common_matrix_names(base, {"CKPT y": renamed})


def test_rescale_update_gives_the_early_direction_the_final_norm():
    rng = np.random.default_rng(5)
    base, early, final = (torch.from_numpy(rng.standard_normal((20, 10)).astype(np.float32)) for _ in range(3))
    rescaled, scale = rescale_update(base, early, final)
    assert torch.linalg.norm(rescaled - base).item() == pytest.approx(torch.linalg.norm(final - base).item(), rel=1e-5)
    assert scale == pytest.approx((torch.linalg.norm(final - base) / torch.linalg.norm(early - base)).item())
    cosine = torch.nn.functional.cosine_similarity((rescaled - base).flatten(), (early - base).flatten(), dim=0)
    assert cosine.item() == pytest.approx(1.0, abs=1e-6)
    same, scale = rescale_update(base.bfloat16(), base.bfloat16(), final)
    assert same.dtype == torch.bfloat16 and torch.equal(same, base.bfloat16()) and math.isnan(scale)


def test_rescaled_weights_cover_every_base_parameter():
    rng = np.random.default_rng(6)
    base = toy_state(rng, SHAPES)
    early = {n: t + 0.01 for n, t in base.items()}
    final = {n: t + 0.04 for n, t in base.items()}
    scales = {}
    rescaled = dict(rescaled_weights(base, early, final, scales))
    assert list(rescaled) == list(SHAPES)
    assert all(s == pytest.approx(4.0, rel=1e-3) for s in scales.values())
    assert torch.allclose(rescaled["model.layers.0.input_layernorm.weight"], final["model.layers.0.input_layernorm.weight"], atol=1e-5)
    check_same_parameters(base, {"early": early})
    with pytest.raises(ValueError, match="early lacks 1 parameter"):
        check_same_parameters(base, {"early": {n: t for n, t in early.items() if "norm" not in n}})


def test_docstring_examples():
    result = doctest.testmod(diagnostics)
    assert result.attempted > 0 and result.failed == 0
