"""The model behind the ``hf`` rollout server: batched generation and prompt scoring with HF transformers.

One :meth:`HFEngine.run` call serves a whole batch of requests:

* requests asking for prompt log-probs (the distillation teacher) share one padded forward pass;
  their first generated token comes from the same pass;
* the other requests are grouped by sampling settings, and each group is generated in one call of
  ``model.generate`` over the left-padded prompts. A row longer than its own ``max_tokens`` is cut:
  generation is autoregressive, so the cut row equals a row generated with that limit.

Log-probs of sampled tokens are "processed" as verl asks of its engines (``rollout.logprobs_mode``):
``log_softmax(logits / temperature)``, the same quantity the actor computes on the same tokens.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import torch
from transformers import GenerationConfig, PreTrainedModel

from effopd_verl.cpu.prompt_logprobs import prompt_logprob_rows

__all__ = ["HFEngine", "Request", "Result"]


@dataclass
class Request:
    """One generate call, its sampling settings already resolved."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    ignore_eos: bool = False
    prompt_logprobs: Optional[int] = None  # None: no scoring; 0: the actual tokens; k > 0: top k

    def sampling_key(self) -> tuple:
        return (float(self.temperature), float(self.top_p), int(self.top_k), bool(self.ignore_eos))


@dataclass
class Result:
    """What the server returns for one request."""

    token_ids: list[int]
    log_probs: list[float]
    finish_reason: str  # "stop" (an end token) or "length"
    prompt_table: Optional[tuple[list[list[int]], list[list[float]]]] = None
    extra: dict = field(default_factory=dict)


def _processed_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    scaled = logits.float() / temperature if temperature > 0 else logits.float()
    return torch.log_softmax(scaled, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _sample(logits: torch.Tensor, temperature: float, top_p: float, top_k: int) -> torch.Tensor:
    """One token per row of ``logits`` (B, V), with the same warpers ``model.generate`` applies."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if 0 < top_k < scores.shape[-1]:
        kth = scores.topk(top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[..., -1:] = False
        scores = scores.masked_fill(remove_sorted.scatter(-1, order, remove_sorted), float("-inf"))
    return torch.multinomial(scores.softmax(dim=-1), 1).squeeze(-1)


class HFEngine:
    """A causal LM on the CPU serving batches of :class:`Request`.

    Args:
        model: the HF model (eval mode is set here).
        eos_token_ids: tokens that end a response.
        pad_token_id: padding for batched inputs.
    """

    def __init__(self, model: PreTrainedModel, eos_token_ids: Iterable[int], pad_token_id: int):
        self.model = model.eval()
        self.eos_token_ids = sorted({int(t) for t in eos_token_ids})
        self.pad_token_id = int(pad_token_id)
        self._lock = threading.Lock()
        self.weight_version = 0

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Copy ``(name, tensor)`` pairs into the model's parameters and buffers; returns how many.

        Names are the HF state-dict names the trainer's FSDP engine exports; an unknown name or a
        wrong shape raises, so a broken weight push cannot pass silently.
        """
        state = self.model.state_dict(keep_vars=True)
        count = 0
        with self._lock:
            for name, tensor in named_tensors:
                if name not in state:
                    raise KeyError(f"weight {name!r} is not a parameter of the rollout model")
                target = state[name]
                if tuple(target.shape) != tuple(tensor.shape):
                    raise ValueError(f"weight {name!r}: shape {tuple(tensor.shape)} != model's {tuple(target.shape)}")
                target.data.copy_(tensor.to(target.dtype))
                count += 1
        return count

    # ------------------------------------------------------------------ serving
    def run(self, requests: Sequence[Request]) -> list[Result]:
        """Serve a batch; results in the order of ``requests``."""
        results: list[Optional[Result]] = [None] * len(requests)
        with self._lock, torch.no_grad():
            scoring = [i for i, r in enumerate(requests) if r.prompt_logprobs is not None]
            if scoring:
                for i, result in zip(scoring, self._score([requests[i] for i in scoring])):
                    results[i] = result
            groups: dict[tuple, list[int]] = {}
            for i, request in enumerate(requests):
                if results[i] is None:
                    groups.setdefault(request.sampling_key(), []).append(i)
            for indices in groups.values():
                for i, result in zip(indices, self._generate([requests[i] for i in indices])):
                    results[i] = result
        return results  # type: ignore[return-value]

    def _score(self, requests: Sequence[Request]) -> list[Result]:
        lengths = [len(r.prompt_ids) for r in requests]
        width = max(lengths)
        input_ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, request in enumerate(requests):  # right padding: positions 0..L-1 as in a single pass
            input_ids[row, : lengths[row]] = torch.tensor(request.prompt_ids)
            attention_mask[row, : lengths[row]] = 1
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        results = []
        for row, request in enumerate(requests):
            n = lengths[row]
            table = prompt_logprob_rows(logits[row, :n], input_ids[row, :n], request.prompt_logprobs)
            last = logits[row, n - 1 : n]
            token = _sample(last, request.temperature, request.top_p, request.top_k)
            logprob = _processed_logprobs(last, token, request.temperature)
            if request.max_tokens > 1:
                # rare (full responses with scoring): generate the rest separately, keep the table
                generated = self._generate([request])[0]
                generated.prompt_table = table
                results.append(generated)
                continue
            stop = not request.ignore_eos and int(token) in self.eos_token_ids
            results.append(Result([int(token)], [float(logprob)], "stop" if stop else "length", table))
        return results

    def _generate(self, requests: Sequence[Request]) -> list[Result]:
        first = requests[0]
        lengths = [len(r.prompt_ids) for r in requests]
        width = max(lengths)
        input_ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, request in enumerate(requests):  # left padding for generation
            input_ids[row, width - lengths[row] :] = torch.tensor(request.prompt_ids)
            attention_mask[row, width - lengths[row] :] = 1
        greedy = first.temperature <= 0
        config = GenerationConfig(
            max_new_tokens=max(r.max_tokens for r in requests),
            do_sample=not greedy,
            temperature=None if greedy else first.temperature,
            top_p=None if greedy or first.top_p >= 1.0 else first.top_p,
            top_k=None if greedy or first.top_k <= 0 else first.top_k,
            # ignore_eos: an id no token has (None would fall back to the model's own end tokens)
            eos_token_id=[self.model.config.vocab_size] if first.ignore_eos else self.eos_token_ids,
            pad_token_id=self.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
        new_tokens = out.sequences[:, width:]
        step_logits = torch.stack(out.logits, dim=1) if out.logits else torch.empty(len(requests), 0, 1)
        results = []
        for row, request in enumerate(requests):
            tokens = new_tokens[row, : request.max_tokens]
            finish = "length"
            if not request.ignore_eos:
                for pos, token in enumerate(tokens.tolist()):
                    if token in self.eos_token_ids:
                        tokens, finish = tokens[: pos + 1], "stop"
                        break
            logprobs = _processed_logprobs(step_logits[row, : len(tokens)], tokens, request.temperature)
            results.append(Result(tokens.tolist(), logprobs.tolist(), finish))
        return results
