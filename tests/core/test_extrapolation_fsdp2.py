"""Sharded extrapolation on a real two-rank FSDP2 model over gloo equals the full-tensor math.

Each rank holds half of every parameter (DTensor local shards); the extrapolation touches only
those. Full tensors are gathered here, inside the test, to compare against a direct computation.
"""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from transformers import Qwen3Config, Qwen3ForCausalLM

from effopd_verl.core.config import EffOPDConfig
from effopd_verl.core.extrapolation import ShardedExtrapolation

WORLD = 2
ALPHA = 4.0


def tiny_qwen3() -> Qwen3ForCausalLM:
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=64, tie_word_embeddings=False,
    )
    return Qwen3ForCausalLM(config).float()


def batch(seed: int) -> torch.Tensor:
    return torch.randint(0, 64, (4, 12), generator=torch.Generator().manual_seed(seed))


def train_step(model, optimizer, seed):
    ids = batch(seed)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return loss.detach()


def full_params(model) -> dict[str, torch.Tensor]:
    return {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}


def rank_main(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        check_sharded_extrapolation(rank)
        dist.barrier()  # let both ranks finish their collectives before tearing gloo down
    finally:
        dist.destroy_process_group()


def check_sharded_extrapolation(rank: int) -> None:
    mesh = init_device_mesh("cpu", (WORLD,))
    model = tiny_qwen3()
    reference = tiny_qwen3()  # unsharded twin, driven with the same steps
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ref_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)

    selects = EffOPDConfig().selects
    ex = ShardedExtrapolation(selects)
    ex.set_anchor(model.named_parameters())
    local_numel = sum(p.to_local().numel() for n, p in model.named_parameters() if selects(n))
    full_numel = sum(p.numel() for n, p in model.named_parameters() if selects(n))
    assert local_numel < full_numel  # a real shard, not the whole tensor
    assert ex.bytes_held() == 4 * local_numel
    theta_0 = full_params(model)

    train_step(model, optimizer, seed=1)
    train_step(reference, ref_optimizer, seed=1)
    theta_t = full_params(model)
    norms = ex.snapshot(model.named_parameters()).squared_norms
    total_sq = torch.tensor(sum(norms.values()), dtype=torch.float64)
    dist.all_reduce(total_sq)
    expected_sq = sum((theta_t[n] - theta_0[n]).double().square().sum() for n in norms)
    assert total_sq.item() == pytest.approx(expected_sq.item(), rel=1e-5)

    # candidate θ_t + α·d on the shards == the same math on full tensors, bit for bit
    assert ex.apply(ALPHA, model.named_parameters())
    candidate = full_params(model)
    for name, value in candidate.items():
        if selects(name):
            expected = torch.add(theta_t[name], theta_t[name] - theta_0[name], alpha=ALPHA)
            assert torch.equal(value, expected), name
        else:
            assert torch.equal(value, theta_t[name]), name

    # the forward pass (FSDP2 all-gathers the shards) sees the candidate
    with torch.no_grad():
        reference.load_state_dict(candidate)
        ids = batch(7)
        torch.testing.assert_close(model(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=1e-5, atol=1e-5)
    model.reshard()  # FSDP2 keeps the root unsharded after a forward; shards are only valid resharded

    ex.restore(model.named_parameters())
    assert all(torch.equal(v, theta_t[n]) for n, v in full_params(model).items())

    # commit, then train on: the optimizer step starts from the committed weights
    ex.commit(ALPHA, model.named_parameters())
    committed = full_params(model)
    assert all(torch.equal(committed[n], candidate[n]) for n in committed)
    with torch.no_grad():
        reference.load_state_dict(committed)
    train_step(model, optimizer, seed=2)
    train_step(reference, ref_optimizer, seed=2)
    after = full_params(model)
    for name, p in reference.named_parameters():
        torch.testing.assert_close(after[name], p.detach(), rtol=1e-4, atol=1e-5)

    # both ranks hold the same anchor view of the model: the new anchor is the committed point
    norms = ex.snapshot(model.named_parameters()).squared_norms
    total_sq = torch.tensor(sum(norms.values()), dtype=torch.float64)
    dist.all_reduce(total_sq)
    expected_sq = sum((after[n] - committed[n]).double().square().sum() for n in norms)
    assert total_sq.item() == pytest.approx(expected_sq.item(), rel=1e-5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_rank_fsdp2_extrapolation_matches_full_tensor_math():
    mp.spawn(rank_main, args=(free_port(),), nprocs=WORLD, join=True)
