"""Log-probabilities of given tokens under a causal LM, without its whole [T, V] logits.

With h_i the final hidden state at position i, W the output projection (V × H, ``lm_head``), b its
bias (if any) and z_i = W·h_i + b the logits,

    log p(y_i) = z_i[y_i] − logsumexp(z_i),   logsumexp(z) = m + log Σ_v exp(z_v − m),  m = max_v z_v.

:func:`token_logprobs` takes the positions in chunks of r = max(1, ⌊max_chunk_elements / V⌋) rows;
per chunk the logits are computed in the inputs' dtype (as ``lm_head`` computes them), upcast to fp32,
reduced to r values and freed. Memory beyond the N × H hidden states is a few r × V tensors, whatever
the number of positions N; unchunked, N = 18k positions at V = 151,936 take 11 GB in fp32 (and 5.5 GB
more in bf16). Chunking changes no arithmetic of a row: each row's logits and logsumexp are those of
the unchunked computation.

:func:`response_logprobs` scores (prompt, response) pairs with teacher forcing: the sequences go
through the model in right-padded batches of at most ``max_tokens_per_forward`` padded tokens (longest
first), and a forward pre-hook on the model's output embedding takes the final hidden states of the
response positions to :func:`token_logprobs` and hands the output embedding one position per row,
so the model's own logits are [B, 1, V].

Example (a bigram "model": the logits of position i are row y_{i-1} of a table)::

    >>> table = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    >>> hidden = torch.eye(2)[[0, 1, 1]]          # positions after tokens 0, 1, 1
    >>> token_logprobs(hidden, table.T, torch.tensor([1, 0, 1]), max_chunk_elements=2).exp()
    tensor([0.5000, 0.9000, 0.1000])
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

#: Logits per chunk: 2^25 (128 MiB in fp32), 220 positions at Qwen's V = 151,936.
DEFAULT_CHUNK_ELEMENTS = 1 << 25
#: Padded tokens per forward pass of :func:`response_logprobs` (B × longest sequence of the batch);
#: a longer sequence goes alone.
DEFAULT_TOKENS_PER_FORWARD = 16384


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """fp32 log p(targets[i]) under ``logits[i]`` (any float dtype, [N, V]): z[y] − logsumexp(z) in fp32."""
    z = logits.float()
    return z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, dim=-1)


def rows_per_chunk(vocab_size: int, max_chunk_elements: int) -> int:
    """Positions per chunk: ⌊max_chunk_elements / vocab_size⌋, at least 1."""
    if max_chunk_elements < 1:
        raise ValueError(f"max_chunk_elements={max_chunk_elements} must be >= 1 (logits per chunk)")
    return max(1, max_chunk_elements // vocab_size)


def token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """fp32 [N] log p(targets[i]) with logits = hidden[i] · weightᵀ + bias, in chunks of positions.

    ``hidden`` [N, H], ``weight`` [V, H] (an ``lm_head`` weight), ``targets`` [N] token ids in [0, V).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden must be [N, H] and weight [V, H]: got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets must be [N] = [{hidden.shape[0]}]: got {tuple(targets.shape)}")
    vocab = weight.shape[0]
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    if not len(targets):
        return out
    if int(targets.min()) < 0 or int(targets.max()) >= vocab:
        raise ValueError(f"target token ids must lie in [0, {vocab}): got {int(targets.min())}..{int(targets.max())}")
    rows = rows_per_chunk(vocab, max_chunk_elements)
    for start in range(0, len(targets), rows):
        end = start + rows
        out[start:end] = target_logprobs(F.linear(hidden[start:end], weight, bias), targets[start:end])
    return out


def token_budget_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of ``lengths`` grouped longest first, each group's padded size (count × its longest) ≤ ``max_tokens``.

    A sequence longer than ``max_tokens`` forms a group alone.

    >>> token_budget_batches([3, 8, 5, 2, 9], max_tokens=16)
    [[4], [1, 2], [0, 3]]
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens} must be >= 1 (padded tokens per forward pass)")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * lengths[groups[-1][0]] <= max_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


@torch.no_grad()
def response_logprobs(
    model: torch.nn.Module,
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    device: torch.device | str,
    max_tokens_per_forward: int = DEFAULT_TOKENS_PER_FORWARD,
    max_chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> list[float]:
    """Mean log p(response token | everything before it) of each (prompt ids, response ids) pair.

    ``model`` is a Hugging Face causal LM (``get_output_embeddings()``; ``model(input_ids=,
    attention_mask=, use_cache=False).logits``) whose logits are its output embedding's output
    unchanged: a model that transforms them (e.g. logit soft-capping) is refused, as is a forward that
    never calls the output embedding or hands it a slice of the sequence (sequence parallelism).
    Prompts and responses must be non-empty.
    """
    for k, (prompt, response) in enumerate(sequences):
        if not prompt or not response:
            raise ValueError(
                f"sequence {k} has {len(prompt)} prompt and {len(response)} response tokens: both must be non-empty "
                "(leave out prompts whose response is empty before scoring)"
            )
    head = model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embedding (get_output_embeddings() is None)")
    scores = [0.0] * len(sequences)
    lengths = [len(p) + len(r) for p, r in sequences]
    for group in token_budget_batches(lengths, max_tokens_per_forward):
        batch = _teacher_forcing_batch([sequences[i] for i in group], device)
        found: dict[str, torch.Tensor] = {}

        def project(module: torch.nn.Module, args: tuple) -> tuple:
            hidden = args[0]
            if tuple(hidden.shape[:2]) != tuple(batch["input_ids"].shape):
                raise RuntimeError(
                    f"the output embedding got hidden states {tuple(hidden.shape)} for input ids "
                    f"{tuple(batch['input_ids'].shape)}: sequence parallelism (a slice per rank) is not supported here"
                )
            if isinstance(module.weight, DTensor):
                raise RuntimeError("the output embedding's weight is a sharded DTensor inside its forward")
            found["logprobs"] = token_logprobs(
                hidden[batch["rows"], batch["positions"]], module.weight, batch["targets"], module.bias, max_chunk_elements
            )
            last = hidden[:, -1:]
            found["last_logits"] = F.linear(last, module.weight, module.bias)
            return (last, *args[1:])

        handle = head.register_forward_pre_hook(project)
        try:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
        finally:
            handle.remove()
        if "logprobs" not in found:
            raise RuntimeError(
                f"{type(model).__name__}'s forward did not call its output embedding (a patched forward, e.g. "
                "verl's fused kernels, computes log-probs itself): teacher forcing needs the plain forward"
            )
        if not torch.allclose(logits.float(), found["last_logits"].float(), rtol=1e-3, atol=1e-3):
            raise ValueError(
                f"{type(model).__name__} transforms its output embedding's logits (e.g. soft-capping or scaling): "
                "its log-probs are not the output embedding's, which is all teacher forcing here computes"
            )
        rows = batch["rows"]
        sums = torch.zeros(len(group), dtype=torch.float64, device=rows.device).index_add_(0, rows, found["logprobs"].double())
        counts = torch.bincount(rows, minlength=len(group))
        for i, mean in zip(group, (sums / counts).tolist()):
            scores[i] = mean
    return scores


def _teacher_forcing_batch(sequences: Sequence[tuple[Sequence[int], Sequence[int]]], device) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask`` [B, L] and, per response token, its row, the position
    whose hidden state predicts it (the one before it) and the token itself (``targets``)."""
    longest = max(len(p) + len(r) for p, r in sequences)
    input_ids = torch.zeros(len(sequences), longest, dtype=torch.long)
    attention_mask = torch.zeros(len(sequences), longest, dtype=torch.long)
    rows, positions, targets = [], [], []
    for k, (prompt, response) in enumerate(sequences):
        n = len(prompt) + len(response)
        input_ids[k, :n] = torch.tensor([*prompt, *response], dtype=torch.long)
        attention_mask[k, :n] = 1
        rows += [k] * len(response)
        positions += range(len(prompt) - 1, n - 1)
        targets += response
    tensors = dict(input_ids=input_ids, attention_mask=attention_mask, rows=torch.tensor(rows),
                   positions=torch.tensor(positions), targets=torch.tensor(targets, dtype=torch.long))
    return {k: v.to(device) for k, v in tensors.items()}


__all__ = [
    "DEFAULT_CHUNK_ELEMENTS",
    "DEFAULT_TOKENS_PER_FORWARD",
    "target_logprobs",
    "rows_per_chunk",
    "token_logprobs",
    "token_budget_batches",
    "response_logprobs",
]
