"""Live direction geometry: sums over ranks equal the figures of the whole direction."""

import math

import pytest
import torch

from effopd_verl.core.extrapolation import DIRECTION_SAMPLE_STRIDE, DirectionStats, ShardedExtrapolation
from effopd_verl.core.live_geometry import direction_geometry

NAMES = ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight"]


def two_triggers(tensors: dict[str, torch.Tensor], first: dict, second: dict) -> DirectionStats:
    named = list(tensors.items())
    ex = ShardedExtrapolation(lambda name: True)
    ex.set_anchor(named)
    with torch.no_grad():
        for name, t in named:
            t.add_(first[name])
    ex.snapshot(named)
    ex.commit(0.0, named)
    with torch.no_grad():
        for name, t in named:
            t.add_(second[name])
    return ex.snapshot(named)


def test_shards_on_two_ranks_give_the_full_direction_figures():
    torch.manual_seed(0)
    shape = (64, 122)
    first = {n: torch.randn(shape) for n in NAMES}
    second = {n: 0.9 * first[n] + 0.4 * torch.randn(shape) for n in NAMES}
    # rank r holds rows r::2 of every matrix (each its own tensor), as a row-sharded FSDP2 shard would
    ranks = []
    for r in range(2):
        tensors = {n: torch.zeros(shape)[r::2].clone() for n in NAMES}
        ranks.append(two_triggers(tensors, {n: first[n][r::2] for n in NAMES}, {n: second[n][r::2] for n in NAMES}))
    m = direction_geometry(ranks)

    full_sq = {n: second[n].square().sum().item() for n in NAMES}
    total = sum(full_sq.values())
    assert m["direction_norm"] == pytest.approx(math.sqrt(total), rel=1e-5)
    assert m["geometry/norm_share/attention"] == pytest.approx(full_sq[NAMES[0]] / total, rel=1e-5)
    assert m["geometry/norm_share/mlp"] == pytest.approx((full_sq[NAMES[1]] + full_sq[NAMES[2]]) / total, rel=1e-5)
    assert m["geometry/layer_norm/000"] == pytest.approx(math.sqrt(full_sq[NAMES[0]] + full_sq[NAMES[1]]), rel=1e-5)
    assert m["geometry/layer_norm/001"] == pytest.approx(math.sqrt(full_sq[NAMES[2]]), rel=1e-5)
    # the cosine is the one of the elements both ranks sampled: every 61st of each local shard
    a = torch.cat([second[n][r::2].reshape(-1)[::DIRECTION_SAMPLE_STRIDE] for r in range(2) for n in NAMES])
    b = torch.cat([first[n][r::2].reshape(-1)[::DIRECTION_SAMPLE_STRIDE] for r in range(2) for n in NAMES])
    assert m["geometry/direction_cosine"] == pytest.approx((a @ b / (a.norm() * b.norm())).item(), rel=1e-4)
    exact = torch.nn.functional.cosine_similarity(
        torch.cat([first[n].reshape(-1) for n in NAMES]), torch.cat([second[n].reshape(-1) for n in NAMES]), dim=0
    )
    assert m["geometry/direction_cosine"] == pytest.approx(exact.item(), abs=0.03)


def test_first_trigger_and_zero_direction_have_no_cosine_or_shares():
    m = direction_geometry([DirectionStats({NAMES[0]: 0.0})])
    assert m == {"direction_norm": 0.0, "geometry/layer_norm/000": 0.0}
