"""The model behind the ``hf`` rollout server: batched generation and prompt scoring with HF transformers.

One :meth:`HFEngine.run` call serves a whole batch of requests:

* requests asking for prompt log-probs (the distillation teacher) share one padded forward pass;
  their first generated token comes from the same pass;
* the other requests are grouped by sampling settings, and each group is decoded together: one
  forward pass with a KV cache per step over the left-padded rows, then one token per row.

Rollouts are reproducible: every sampled request draws from its own ``torch.Generator``, seeded by
:func:`request_seed` from the engine's base seed, the trainer step of the last weight push, the
request itself (seed tag, sampling settings, ``max_tokens``, prompt) and how many sampled requests
equal to it came before since that push. Which tokens a request gets therefore does not depend on
the other requests of its batch, nor on how the server's batching window happened to cut the stream
of requests, nor on how many weight pushes came before (a server restarted from a checkpoint gets
the push of the step it resumes at, and samples what the first one did). Log-probs may differ in the
last float bits with the batch (CPU matrix products round differently for different batch shapes);
a token only changes if such a rounding difference decides between two almost equally likely draws.
The step, not a hash of the weights, keys the streams for that reason: weights that differ in their
last bits between two runs still give the same tokens.

Log-probs of sampled tokens are "processed" as verl asks of its engines (``rollout.logprobs_mode``):
``log_softmax(logits / temperature)``, the same quantity the actor computes on the same tokens.
"""

from __future__ import annotations

import hashlib
import threading
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from effopd_verl.cpu.prompt_logprobs import prompt_logprob_rows

__all__ = ["HFEngine", "Request", "Result", "request_seed"]


@dataclass
class Request:
    """One generate call, its sampling settings already resolved.

    ``seed_tag`` separates the random streams of requests with the same prompt (see :func:`request_seed`).
    """

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    ignore_eos: bool = False
    prompt_logprobs: Optional[int] = None  # None: no scoring; 0: the actual tokens; k > 0: top k
    seed_tag: str = ""

    def sampling_key(self) -> tuple:
        return (float(self.temperature), float(self.top_p), int(self.top_k), bool(self.ignore_eos))

    def stream_key(self) -> bytes:
        """Digest of the seed tag, sampling settings, ``max_tokens`` and prompt: requests with equal keys
        are interchangeable and share an occurrence count (see :func:`request_seed`)."""
        settings = repr((self.seed_tag, self.sampling_key(), int(self.max_tokens))).encode()
        return hashlib.sha256(settings + b"\0" + array("q", self.prompt_ids).tobytes()).digest()


@dataclass
class Result:
    """What the server returns for one request."""

    token_ids: list[int]
    log_probs: list[float]
    finish_reason: str  # "stop" (an end token) or "length"
    prompt_table: Optional[tuple[list[list[int]], list[list[float]]]] = None
    extra: dict = field(default_factory=dict)


def request_seed(base_seed: int, step: Optional[int], stream_key: bytes, occurrence: int) -> int:
    """The seed of one sampled request's generator: the first 63 bits of
    ``sha256(base_seed, step, occurrence, stream_key)``, where ``step`` is the trainer step of the last
    weight push (None before any), ``stream_key`` is :meth:`Request.stream_key` and ``occurrence``
    counts the earlier sampled requests with the same key since that push (so n samples of one prompt,
    or a repeated prompt, differ; a scoring request is always occurrence 0)."""
    head = repr((int(base_seed), step, int(occurrence))).encode()
    return int.from_bytes(hashlib.sha256(head + b"\0" + stream_key).digest()[:8], "little") >> 1


def _processed_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    scaled = logits.float() / temperature if temperature > 0 else logits.float()
    return torch.log_softmax(scaled, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _warped_probs(logits: torch.Tensor, temperature: float, top_p: float, top_k: int) -> torch.Tensor:
    """Sampling distribution per row of ``logits`` (B, V), with the warpers ``model.generate`` applies."""
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
    return scores.softmax(dim=-1)


def _sample(
    logits: torch.Tensor, request: Request, generators: Sequence[Optional[torch.Generator]]
) -> torch.Tensor:
    """One token per row of ``logits`` (B, V) with ``request``'s settings; row i draws from ``generators[i]``
    (greedy, temperature 0, takes the argmax and needs none)."""
    if request.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = _warped_probs(logits, request.temperature, request.top_p, request.top_k)
    return torch.cat([torch.multinomial(row, 1, generator=g) for row, g in zip(probs, generators)])


class HFEngine:
    """A causal LM on the CPU serving batches of :class:`Request`.

    Args:
        model: the HF model (eval mode is set here).
        eos_token_ids: tokens that end a response.
        pad_token_id: padding for batched inputs.
        seed: base seed of every request's generator (:func:`request_seed`).
    """

    def __init__(self, model: PreTrainedModel, eos_token_ids: Iterable[int], pad_token_id: int, seed: int = 0):
        self.model = model.eval()
        self.eos_token_ids = sorted({int(t) for t in eos_token_ids})
        self.pad_token_id = int(pad_token_id)
        self.seed = int(seed)
        self._lock = threading.Lock()
        self.weight_version = 0
        self._restart_streams(step=None)

    def _restart_streams(self, step: Optional[int]) -> None:
        self._step = step
        self._occurrences: Counter[bytes] = Counter()

    def _generator(self, request: Request) -> Optional[torch.Generator]:
        """The request's own generator (None when greedy); counts the request as an occurrence, except a
        scoring request (prompt log-probs plus one token, the teacher's call): its token is seeded as a first
        occurrence and not counted, so a server without weight pushes (the teacher) keeps no state per request."""
        if request.temperature <= 0:
            return None
        key = request.stream_key()
        if request.prompt_logprobs is not None and request.max_tokens <= 1:
            return torch.Generator().manual_seed(request_seed(self.seed, self._step, key, 0))
        seed = request_seed(self.seed, self._step, key, self._occurrences[key])
        self._occurrences[key] += 1
        return torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]], step: Optional[int] = None) -> int:
        """Copy ``(name, tensor)`` pairs into the model's parameters and buffers; returns how many.

        Names are the HF state-dict names the trainer's FSDP engine exports; an unknown name or a
        wrong shape raises, so a broken weight push cannot pass silently. ``step`` is the trainer step
        of the weights (verl's ``global_steps``): the random streams restart from it, occurrence counts
        at zero; without a step (a push that only wakes the current weights up) they go on.
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
            if step is not None:
                self._restart_streams(step)
        return count

    # ------------------------------------------------------------------ serving
    def run(self, requests: Sequence[Request]) -> list[Result]:
        """Serve a batch; results in the order of ``requests``."""
        results: list[Optional[Result]] = [None] * len(requests)
        with self._lock, torch.no_grad():
            generators = [self._generator(r) for r in requests]  # in batch order: occurrences count in arrival order
            scoring = [i for i, r in enumerate(requests) if r.prompt_logprobs is not None]
            if scoring:
                scored = self._score([requests[i] for i in scoring], [generators[i] for i in scoring])
                for i, result in zip(scoring, scored):
                    results[i] = result
            groups: dict[tuple, list[int]] = {}
            for i, request in enumerate(requests):
                if results[i] is None:
                    groups.setdefault(request.sampling_key(), []).append(i)
            for indices in groups.values():
                generated = self._generate([requests[i] for i in indices], [generators[i] for i in indices])
                for i, result in zip(indices, generated):
                    results[i] = result
        return results  # type: ignore[return-value]

    def _score(self, requests: Sequence[Request], generators: Sequence[Optional[torch.Generator]]) -> list[Result]:
        lengths = [len(r.prompt_ids) for r in requests]
        width = max(lengths)
        input_ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, request in enumerate(requests):  # right padding: positions 0..L-1 as in a single pass
            input_ids[row, : lengths[row]] = torch.tensor(request.prompt_ids)
            attention_mask[row, : lengths[row]] = 1
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        results = []
        for row, (request, generator) in enumerate(zip(requests, generators)):
            n = lengths[row]
            table = prompt_logprob_rows(logits[row, :n], input_ids[row, :n], request.prompt_logprobs)
            if request.max_tokens > 1:
                # rare (full responses with scoring): generate separately, keep the table
                generated = self._generate([request], [generator])[0]
                generated.prompt_table = table
                results.append(generated)
                continue
            last = logits[row, n - 1 : n]
            token = _sample(last, request, [generator])
            logprob = _processed_logprobs(last, token, request.temperature)
            stop = not request.ignore_eos and int(token) in self.eos_token_ids
            results.append(Result([int(token)], [float(logprob)], "stop" if stop else "length", table))
        return results

    def _left_padded(self, requests: Sequence[Request]) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = [len(r.prompt_ids) for r in requests]
        width = max(lengths)
        input_ids = torch.full((len(requests), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, request in enumerate(requests):
            input_ids[row, width - lengths[row] :] = torch.tensor(request.prompt_ids)
            attention_mask[row, width - lengths[row] :] = 1
        return input_ids, attention_mask

    def _generate(self, requests: Sequence[Request], generators: Sequence[Optional[torch.Generator]]) -> list[Result]:
        """Decode requests of one sampling setting together until each has an end token or its ``max_tokens``.

        Inputs are prepared as ``model.generate`` does (left padding, positions counted over the
        attention mask, a dynamic KV cache, logits of the last position only).
        """
        settings = requests[0]
        input_ids, attention_mask = self._left_padded(requests)
        position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
        cache = DynamicCache(config=self.model.config)
        tokens: list[list[int]] = [[] for _ in requests]
        logprobs: list[list[float]] = [[] for _ in requests]
        finish = [""] * len(requests)  # "" while the row is still generating
        while True:
            logits = self.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                past_key_values=cache, use_cache=True, logits_to_keep=1,
            ).logits[:, -1].float()
            chosen = _sample(logits, settings, generators)
            processed = _processed_logprobs(logits, chosen, settings.temperature)
            for row, (request, token, logprob) in enumerate(zip(requests, chosen.tolist(), processed.tolist())):
                if not finish[row]:
                    tokens[row].append(token)
                    logprobs[row].append(logprob)
                    finish[row] = self._finish_reason(request, tokens[row])
            if all(finish):
                break
            input_ids = chosen.unsqueeze(-1)
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(requests), 1)], dim=-1)
            position_ids = position_ids[:, -1:] + 1
        return [Result(t, lp, f) for t, lp, f in zip(tokens, logprobs, finish)]

    def _finish_reason(self, request: Request, tokens: list[int]) -> str:
        """Returns "stop" after an end token (unless ``ignore_eos``), "length" at ``max_tokens``, else ""."""
        if not request.ignore_eos and tokens[-1] in self.eos_token_ids:
            return "stop"
        return "length" if len(tokens) >= request.max_tokens else ""
