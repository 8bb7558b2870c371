"""Chunked token log-probs equal the unchunked fp64 computation; teacher forcing in padded batches equals
one sequence at a time with whole logits (a tiny real Qwen3, whole and under two-rank FSDP2 wrapped as verl
wraps it); models whose logits are not lm_head's are refused."""

import doctest

import pytest
import torch
import torch.nn.functional as F
from transformers import Gemma2Config, Gemma2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from effopd_verl.core import token_logprob
from effopd_verl.core.token_logprob import (
    response_logprobs,
    rows_per_chunk,
    target_logprobs,
    token_budget_batches,
    token_logprobs,
)

V, H = 1000, 48


def reference(hidden, weight, targets, bias=None):
    """Unchunked: the whole [N, V] logits in the inputs' dtype, log_softmax in fp64."""
    logits = F.linear(hidden, weight, bias).double()
    return logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)


def inputs(n, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, H, generator=g).to(dtype)
    weight = torch.randn(V, H, generator=g).to(dtype)
    return hidden, weight, torch.randint(0, V, (n,), generator=g)


def test_docstring_examples():
    result = doctest.testmod(token_logprob)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("chunk_rows", [1, 3, 7, 64, 100, 101, 1000])  # 100 positions: uneven, exact, one chunk
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunked_equals_the_unchunked_fp64_reference(chunk_rows, dtype):
    hidden, weight, targets = inputs(100, dtype)
    bias = torch.randn(V, dtype=dtype)
    got = token_logprobs(hidden, weight, targets, bias, max_chunk_elements=chunk_rows * V)
    assert got.dtype == torch.float32 and got.shape == (100,)
    torch.testing.assert_close(got.double(), reference(hidden.double(), weight.double(), targets, bias.double()),
                               rtol=1e-5, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("chunk_rows", [1, 5, 33, 1000])
def test_half_precision_logits_are_upcast_before_the_reduction(dtype, chunk_rows):
    """The logits come out of the matmul in bf16/fp16 as lm_head's would; the reduction is fp32: within 1e-5
    of the fp64 reduction of the same half-precision logits."""
    hidden, weight, targets = inputs(66, dtype, seed=1)
    got = token_logprobs(hidden, weight, targets, max_chunk_elements=chunk_rows * V)
    torch.testing.assert_close(got.double(), reference(hidden, weight, targets), rtol=1e-5, atol=0)


def test_one_position_and_no_position():
    hidden, weight, targets = inputs(1)
    torch.testing.assert_close(token_logprobs(hidden, weight, targets).double(), reference(hidden.double(), weight.double(), targets))
    empty = token_logprobs(hidden[:0], weight, targets[:0])
    assert empty.shape == (0,) and empty.dtype == torch.float32


def test_target_logprobs_is_log_softmax_at_the_target():
    logits = torch.randn(4, 9, dtype=torch.float64) * 30
    targets = torch.tensor([0, 8, 3, 3])
    want = logits.log_softmax(-1)[torch.arange(4), targets]
    got = target_logprobs(logits, targets)
    assert got.dtype == torch.float32  # fp32 arithmetic: within a few fp32 ulps of the logits' scale
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_bad_shapes_and_ids_are_errors():
    hidden, weight, targets = inputs(5)
    with pytest.raises(ValueError, match=r"\[0, 1000\): got .*1000"):
        token_logprobs(hidden, weight, torch.tensor([0, 1, 2, 3, V]))
    with pytest.raises(ValueError, match="hidden must be"):
        token_logprobs(hidden, weight[:, :3], targets)
    with pytest.raises(ValueError, match="targets must be"):
        token_logprobs(hidden, weight, targets[:2])
    with pytest.raises(ValueError, match="max_chunk_elements=0"):
        rows_per_chunk(V, 0)


def test_rows_per_chunk():
    assert rows_per_chunk(151_936, 1 << 25) == 220
    assert rows_per_chunk(151_936, 10) == 1


@pytest.mark.parametrize("max_tokens", [1, 7, 16, 40, 10_000])
def test_token_budget_batches_cover_every_sequence_once_within_the_budget(max_tokens):
    lengths = [5, 9, 1, 9, 3, 12, 4, 4]
    groups = token_budget_batches(lengths, max_tokens)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        longest = max(lengths[i] for i in g)
        assert len(g) == 1 or len(g) * longest <= max_tokens
    assert len(token_budget_batches(lengths, 10_000)) == 1
    assert token_budget_batches([], 8) == []


# ---------------------------------------------------------------- teacher forcing on a real (tiny) model
def qwen3(tied=False):
    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=101, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
                         tie_word_embeddings=tied, attn_implementation="sdpa")
    return Qwen3ForCausalLM(config).eval()


def one_at_a_time(model, sequences):
    """The former way: one unpadded sequence per forward, whole logits, fp32 log_softmax."""
    out = []
    for prompt, response in sequences:
        ids = torch.tensor([[*prompt, *response]])
        logits = model(input_ids=ids, use_cache=False).logits[0]
        logp = logits[len(prompt) - 1 : len(ids[0]) - 1].float().log_softmax(-1)
        out.append(logp.gather(-1, torch.tensor(response)[:, None]).mean().item())
    return out


def random_sequences(n, vocab=101, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (n, 2), generator=g).tolist()
    return [(torch.randint(0, vocab, (p,), generator=g).tolist(), torch.randint(0, vocab, (r,), generator=g).tolist())
            for p, r in lengths]


@pytest.mark.parametrize("max_tokens,chunk", [(1, 1), (64, 7 * 101), (10_000, 1 << 25)])
def test_padded_batches_equal_one_sequence_at_a_time(max_tokens, chunk):
    model, sequences = qwen3(), random_sequences(9)
    got = response_logprobs(model, sequences, "cpu", max_tokens_per_forward=max_tokens, max_chunk_elements=chunk)
    assert got == pytest.approx(one_at_a_time(model, sequences), rel=1e-5)


def test_the_model_computes_logits_for_one_position_per_row():
    model, seen = qwen3(), []
    model.lm_head.register_forward_hook(lambda m, a, out: seen.append(tuple(out.shape)))
    response_logprobs(model, random_sequences(3), "cpu", max_tokens_per_forward=10_000)
    assert seen == [(3, 1, 101)]


def test_empty_prompt_or_response_is_an_error():
    with pytest.raises(ValueError, match="sequence 1 has 2 prompt and 0 response tokens"):
        response_logprobs(qwen3(), [([1], [2]), ([1, 2], [])], "cpu")
    with pytest.raises(ValueError, match="sequence 0 has 0 prompt"):
        response_logprobs(qwen3(), [([], [2])], "cpu")


def test_a_model_that_soft_caps_its_logits_is_refused():
    config = Gemma2Config(vocab_size=101, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16, final_logit_softcapping=0.5)
    with pytest.raises(ValueError, match="transforms its output embedding's logits"):
        response_logprobs(Gemma2ForCausalLM(config).eval(), random_sequences(2), "cpu")


# ---------------------------------------------------------------- under FSDP2 (two gloo ranks), wrapped as verl does
def _fsdp2_rank(rank: int, port: int, tied: bool, sequences, expected) -> None:
    import os

    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = qwen3(tied)
        mesh = init_device_mesh("cpu", (2,))
        # verl's apply_fsdp2: decoder layers, and embed_tokens / lm_head unless tied, then the root
        for module in [*model.model.layers, *([] if tied else [model.model.embed_tokens, model.lm_head])]:
            fully_shard(module, mesh=mesh)
        fully_shard(model, mesh=mesh)
        model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=False)  # FSDP2's lazy init, as training would have done
        model.reshard()
        got = response_logprobs(model, sequences, "cpu", max_tokens_per_forward=40, max_chunk_elements=5 * 101)
        model.reshard()
        assert got == pytest.approx(expected, rel=1e-5), (rank, got, expected)
        assert all(isinstance(p, DTensor) for p in model.parameters())
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("tied", [False, True], ids=["lm_head_own_fsdp_unit", "tied_in_the_root"])
def test_fsdp2_sharded_model_scores_as_the_whole_model(tied):
    """The pre-hook sees lm_head's gathered weight inside the forward, whether lm_head is its own FSDP2 unit
    (untied, as verl wraps it) or part of the root (tied); scores equal the unsharded model's."""
    import socket

    import torch.multiprocessing as mp

    sequences = random_sequences(5, seed=3)
    expected = one_at_a_time(qwen3(tied), sequences)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_fsdp2_rank, args=(port, tied, sequences, expected), nprocs=2, join=True)
