import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from effopd_verl.core.config import EffOPDConfig
from effopd_verl.core.extrapolation import DIRECTION_SAMPLE_STRIDE, ShardedExtrapolation


def make_model(dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.ModuleDict(
        {
            "embed_tokens": torch.nn.Embedding(11, 8),
            "self_attn": torch.nn.ModuleDict({"q_proj": torch.nn.Linear(8, 8), "q_norm": torch.nn.LayerNorm(8)}),
            "mlp": torch.nn.ModuleDict({"up_proj": torch.nn.Linear(8, 16, bias=False)}),
        }
    )
    return model.to(dtype)


def train_step(model, scale=0.1, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g).to(p.dtype))


def snapshot_all(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


SELECTED = ["self_attn.q_proj.weight", "self_attn.q_proj.bias", "mlp.up_proj.weight"]


def test_selection_follows_the_config_filter():
    model = make_model()
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    ex.set_anchor(model.named_parameters())
    assert ex.matched_names == SELECTED


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 0.0), (torch.bfloat16, 0.0)])
@pytest.mark.parametrize("alpha", [0.5, 2.0, 10.0])
def test_candidate_equals_direct_full_tensor_math(dtype, atol, alpha):
    model = make_model(dtype)
    anchor = snapshot_all(model)
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    ex.set_anchor(model.named_parameters())
    train_step(model)
    theta_t = snapshot_all(model)
    norms = ex.snapshot(model.named_parameters()).squared_norms
    assert ex.apply(alpha, model.named_parameters())
    for name, p in model.named_parameters():
        if name in SELECTED:
            d = theta_t[name].float() - anchor[name].float()
            expected = torch.add(theta_t[name].float(), d, alpha=alpha).to(dtype)  # fp32 math, one cast back
            torch.testing.assert_close(p.detach(), expected, rtol=0, atol=atol)
            assert norms[name] == pytest.approx(d.square().sum().item(), rel=1e-5)
        else:
            assert torch.equal(p, theta_t[name])  # unselected parameters are untouched


def test_candidates_are_never_cumulative():
    model = make_model()
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    ex.set_anchor(model.named_parameters())
    train_step(model)
    ex.snapshot(model.named_parameters())
    ex.apply(4.0, model.named_parameters())
    direct = snapshot_all(model)
    for alpha in (2.0, 8.0, 6.0):
        ex.apply(alpha, model.named_parameters())
    ex.apply(4.0, model.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p, direct[name])


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([torch.float32, torch.bfloat16]),
    st.lists(st.floats(-20, 20, allow_nan=False, allow_infinity=False), max_size=6),
    st.booleans(),
)
def test_restore_is_bitwise_after_any_sequence(dtype, alphas, cpu_anchor):
    model = make_model(dtype)
    ex = ShardedExtrapolation(EffOPDConfig().selects, anchor_device="cpu" if cpu_anchor else "same")
    ex.set_anchor(model.named_parameters())
    train_step(model)
    theta_t = snapshot_all(model)
    ex.snapshot(model.named_parameters())
    for alpha in alphas:
        ex.apply(alpha, model.named_parameters())
    ex.restore(model.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                           theta_t[name].view(torch.int16 if dtype == torch.bfloat16 else torch.int32))


def test_commit_makes_the_accepted_point_the_anchor():
    model = make_model()
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    ex.set_anchor(model.named_parameters())
    train_step(model, seed=1)
    ex.snapshot(model.named_parameters())
    ex.commit(4.0, model.named_parameters())
    accepted = snapshot_all(model)
    assert not ex.in_search
    # the next direction is measured from the accepted point
    train_step(model, seed=2)
    after = snapshot_all(model)
    norms = ex.snapshot(model.named_parameters()).squared_norms
    for name in SELECTED:
        assert norms[name] == pytest.approx((after[name] - accepted[name]).square().sum().item(), rel=1e-5)


def test_commit_zero_keeps_theta_t_bitwise():
    model = make_model(torch.bfloat16)
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    ex.set_anchor(model.named_parameters())
    train_step(model)
    theta_t = snapshot_all(model)
    ex.snapshot(model.named_parameters())
    ex.apply(6.0, model.named_parameters())
    ex.commit(0.0, model.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p, theta_t[name])
    assert ex.state_dict()["mlp.up_proj.weight"].dtype == torch.float32
    assert torch.equal(ex.state_dict()["mlp.up_proj.weight"], theta_t["mlp.up_proj.weight"].float())


def test_nonfinite_candidate_is_reported():
    model = make_model()
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    ex.set_anchor(model.named_parameters())
    train_step(model, scale=10.0)
    ex.snapshot(model.named_parameters())
    assert ex.apply(2.0, model.named_parameters())
    assert not ex.apply(3e38, model.named_parameters())  # |α·d| overflows fp32
    ex.restore(model.named_parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bytes_held_is_anchor_plus_snapshot():
    model = make_model(torch.bfloat16)
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    ex.set_anchor(model.named_parameters())
    numel = sum(p.numel() for n, p in model.named_parameters() if n in SELECTED)
    assert ex.bytes_held() == 4 * numel  # fp32 anchor
    ex.snapshot(model.named_parameters())
    sampled = sum(-(-p.numel() // DIRECTION_SAMPLE_STRIDE) for n, p in model.named_parameters() if n in SELECTED)
    assert ex.bytes_held() == 4 * numel + 2 * numel + 4 * sampled  # + θ_t in bf16 + the fp32 direction sample
    ex.commit(0.0, model.named_parameters())
    assert ex.bytes_held() == 4 * numel + 4 * sampled
    without = ShardedExtrapolation(EffOPDConfig().selects, direction_sample=False)
    without.set_anchor(model.named_parameters())
    train_step(model)
    assert without.snapshot(model.named_parameters()).sample_dot is None
    assert without.bytes_held() == 4 * numel + 2 * numel  # exactly the anchor and θ_t


def test_state_dict_round_trip_and_shape_check():
    model = make_model()
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    ex.set_anchor(model.named_parameters())
    train_step(model)
    ex.snapshot(model.named_parameters())
    ex.commit(2.0, model.named_parameters())
    state = ex.state_dict()  # anchor and the direction sample of this trigger
    train_step(model, seed=3)
    fresh = ShardedExtrapolation(EffOPDConfig().selects)
    fresh.load_state_dict(state, model.named_parameters())
    resumed, uninterrupted = fresh.snapshot(model.named_parameters()), ex.snapshot(model.named_parameters())
    assert resumed == uninterrupted and resumed.sample_dot is not None
    with pytest.raises(RuntimeError, match="middle of a search"):
        ex.state_dict()
    other = make_model()
    other.mlp.up_proj = torch.nn.Linear(8, 4, bias=False)
    with pytest.raises(ValueError, match="same number of ranks"):
        fresh.load_state_dict(state, other.named_parameters())
    with pytest.raises(ValueError, match="param_include"):
        ShardedExtrapolation(lambda n: "q_proj" in n).load_state_dict(state, model.named_parameters())


def test_misuse_is_a_clear_error():
    model = make_model()
    ex = ShardedExtrapolation(EffOPDConfig().selects)
    with pytest.raises(RuntimeError, match="set_anchor"):
        ex.snapshot(model.named_parameters())
    ex.set_anchor(model.named_parameters())
    with pytest.raises(RuntimeError, match="snapshot"):
        ex.apply(2.0, model.named_parameters())
    ex.snapshot(model.named_parameters())
    with pytest.raises(RuntimeError, match="changed"):
        ex.apply(2.0, [(n, p) for n, p in model.named_parameters() if "bias" not in n])
    with pytest.raises(ValueError, match="select no parameter"):
        ShardedExtrapolation(lambda n: False).set_anchor(model.named_parameters())
    with pytest.raises(ValueError, match="anchor_device"):
        ShardedExtrapolation(lambda n: True, anchor_device="gpu")


def test_finite_check_is_exact_when_a_sum_overflows_or_a_value_is_nan():
    w = torch.nn.Parameter(torch.zeros(4))
    ex = ShardedExtrapolation(lambda name: True)
    ex.set_anchor([("w", w)])
    with torch.no_grad():
        w.fill_(1e38)  # θ_t: finite, but Σ of a candidate overflows fp32
    ex.snapshot([("w", w)])
    assert ex.apply(0.5, [("w", w)])  # every element 1.5e38: finite
    assert not ex.apply(3.0, [("w", w)])  # 4e38: overflows each element
    with torch.no_grad():
        w.copy_(torch.tensor([1.0, 2.0, float("nan"), 4.0]))
    ex.set_anchor([("w", w)])
    ex.snapshot([("w", w)])
    assert not ex.apply(2.0, [("w", w)])


def test_consecutive_direction_products_estimate_the_cosine():
    """⟨d_k, d_{k−1}⟩ from the 1/61 sample: exact on the sampled elements, close to the full cosine."""
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.zeros(256, 512))
    ex = ShardedExtrapolation(lambda name: True)
    ex.set_anchor([("w", w)])
    first = torch.randn(256, 512)
    noise = torch.randn(256, 512)
    with torch.no_grad():
        w.add_(first)
    stats = ex.snapshot([("w", w)])
    assert stats.sample_dot is None  # no previous direction at the first trigger
    ex.commit(0.0, [("w", w)])
    second = 0.8 * first + 0.6 * noise  # cos(first, second) ≈ 0.8
    with torch.no_grad():
        w.add_(second)
    stats = ex.snapshot([("w", w)])
    a, b = second.reshape(-1)[::DIRECTION_SAMPLE_STRIDE], first.reshape(-1)[::DIRECTION_SAMPLE_STRIDE]
    assert stats.sample_dot == pytest.approx((a @ b).item(), rel=1e-4)
    assert stats.sample_sq == pytest.approx(a.square().sum().item(), rel=1e-4)
    assert stats.sample_prev_sq == pytest.approx(b.square().sum().item(), rel=1e-4)
    estimate = stats.sample_dot / (stats.sample_sq * stats.sample_prev_sq) ** 0.5
    exact = torch.nn.functional.cosine_similarity(first.reshape(-1), second.reshape(-1), dim=0).item()
    assert estimate == pytest.approx(exact, abs=0.02)
