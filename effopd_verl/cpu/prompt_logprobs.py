"""Prompt log-probs in the layout verl's distillation teacher expects from a rollout server.

For a sequence of L tokens the server returns two L-row tables (``prompt_ids``, ``prompt_logprobs``),
each row of width ``max(k, 1)``: row i describes position i + 1 (the first token has no log-prob),
and a last dummy row of zeros pads the table back to L rows. With ``k == 0`` a row holds the actual
token at i + 1 and its log-prob; with ``k > 0`` it holds the k most likely tokens there, most likely
first. This is the contract of ``extract_prompt_logprobs`` in verl 0.9.1
(``verl/workers/rollout/vllm_rollout/utils.py:540``), which the teacher manager reads
(``verl/experimental/teacher_loop/teacher_manager.py:140``).
"""

from __future__ import annotations

import torch

__all__ = ["prompt_logprob_rows"]


def prompt_logprob_rows(
    logits: torch.Tensor, token_ids: torch.Tensor, num_logprobs: int
) -> tuple[list[list[int]], list[list[float]]]:
    """Rows of (token ids, log-probs) for one sequence, from the model's logits over it.

    Args:
        logits: ``(L, V)`` logits; row i is the model's prediction for position i + 1.
        token_ids: ``(L,)`` the sequence's tokens.
        num_logprobs: ``k``: 0 for the actual next token only, else the top k per position.

    Returns:
        ``(ids, logprobs)``, each L lists of ``max(k, 1)`` entries, the last all zeros.
    """
    if logits.dim() != 2 or token_ids.dim() != 1 or logits.shape[0] != token_ids.shape[0]:
        raise ValueError(f"need logits (L, V) and token_ids (L,), got {tuple(logits.shape)} and {tuple(token_ids.shape)}")
    if num_logprobs < 0:
        raise ValueError(f"num_logprobs must be >= 0, got {num_logprobs}")
    width = max(num_logprobs, 1)
    logprobs = torch.log_softmax(logits[:-1].float(), dim=-1)
    if num_logprobs == 0:
        ids = token_ids[1:].long().unsqueeze(-1)
        values = logprobs.gather(-1, ids)
    else:
        values, ids = logprobs.topk(num_logprobs, dim=-1)
    id_rows = ids.tolist() + [[0] * width]
    value_rows = values.tolist() + [[0.0] * width]
    return id_rows, value_rows
