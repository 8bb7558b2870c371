"""The teacher's prompt log-prob layout: row i = position i + 1, top-k or the actual token, a trailing zero row."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from effopd_verl.cpu.prompt_logprobs import prompt_logprob_rows


def _case(length: int, vocab: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(length, vocab, generator=g) * 3, torch.randint(0, vocab, (length,), generator=g)


def test_sampled_token_mode_row_i_is_position_i_plus_1():
    logits, ids = _case(6, 11, 0)
    id_rows, lp_rows = prompt_logprob_rows(logits, ids, 0)
    assert len(id_rows) == len(lp_rows) == 6
    logprobs = torch.log_softmax(logits, dim=-1)
    for i in range(5):
        assert id_rows[i] == [int(ids[i + 1])]
        assert lp_rows[i][0] == pytest.approx(float(logprobs[i, ids[i + 1]]), abs=1e-6)
    assert id_rows[-1] == [0] and lp_rows[-1] == [0.0]


def test_topk_mode_most_likely_first_and_trailing_zero_row():
    logits, ids = _case(5, 13, 1)
    id_rows, lp_rows = prompt_logprob_rows(logits, ids, 4)
    logprobs = torch.log_softmax(logits, dim=-1)
    for i in range(4):
        expected = torch.argsort(logprobs[i], descending=True)[:4].tolist()
        assert id_rows[i] == expected
        assert lp_rows[i] == pytest.approx(logprobs[i, expected].tolist(), abs=1e-6)
        assert lp_rows[i] == sorted(lp_rows[i], reverse=True)
    assert id_rows[-1] == [0, 0, 0, 0] and lp_rows[-1] == [0.0, 0.0, 0.0, 0.0]


@settings(max_examples=40, deadline=None)
@given(length=st.integers(1, 12), vocab=st.integers(2, 20), k=st.integers(0, 6), seed=st.integers(0, 10_000))
def test_shape_is_length_by_max_k_1(length, vocab, k, seed):
    k = min(k, vocab)
    logits, ids = _case(length, vocab, seed)
    id_rows, lp_rows = prompt_logprob_rows(logits, ids, k)
    assert len(id_rows) == len(lp_rows) == length
    assert all(len(r) == max(k, 1) for r in id_rows + lp_rows)
    assert all(v <= 0.0 for row in lp_rows for v in row)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        prompt_logprob_rows(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long), 0)
    with pytest.raises(ValueError):
        prompt_logprob_rows(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), -1)
