"""Supervised next-token training of the toy model, and greedy exact-match evaluation.

Training sequences are ``<|user|>question<|im_end|>\\n<|assistant|>answer<|im_end|>`` (what the
chat template renders, then the answer and EOS); the loss covers the answer and EOS only.
Examples are drawn fresh every step from the task (never a held-out question), so the model
learns the task rather than a list. Everything is seeded: the same (task, seed, steps) gives
bitwise the same weights on the same machine and thread count.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase, Qwen3ForCausalLM

from .tasks import Task
from .tokenizer import prompt_messages


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation knobs of the supervised run."""

    steps: int = 1500
    batch_size: int = 256
    lr: float = 3e-3
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.01
    eval_every: int = 5
    """Snapshot interval while the model is still learning (the student is chosen among these)."""
    coarse_eval_every: int = 50
    """Snapshot interval once a snapshot reached ``fine_until`` accuracy."""
    fine_until: float = 0.9


@dataclass
class Snapshot:
    """Weights after ``step`` optimizer steps, with greedy exact match on the selection prompts."""

    step: int
    accuracy: float
    state_dict: dict[str, torch.Tensor] = field(repr=False)


class Encoder:
    """Fast token ids for prompts and answers, identical to the tokenizer's chat template output."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        self.vocab = tokenizer.get_vocab()
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id
        # prompt = prefix + chars(question) + suffix, from the template itself
        probe = "\x00"
        text = tokenizer.apply_chat_template(prompt_messages(probe), add_generation_prompt=True, tokenize=False)
        before, after = text.split(probe)
        self.prefix = tokenizer.encode(before, add_special_tokens=False)
        self.suffix = tokenizer.encode(after, add_special_tokens=False)

    def chars(self, text: str) -> list[int]:
        return [self.vocab[c] for c in text]

    def prompt(self, question: str) -> list[int]:
        return self.prefix + self.chars(question) + self.suffix

    def answer(self, answer: str) -> list[int]:
        return self.chars(answer) + [self.eos_id]


def make_batch(encoder: Encoder, pairs: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 outside answer+EOS)."""
    seqs, label_seqs = [], []
    for question, answer in pairs:
        p, a = encoder.prompt(question), encoder.answer(answer)
        seqs.append(p + a)
        label_seqs.append([-100] * len(p) + a)
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), encoder.pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (s, lab) in enumerate(zip(seqs, label_seqs)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        labels[i, : len(s)] = torch.tensor(lab)
    return ids, mask, labels


@torch.no_grad()
def greedy_answers(
    model: Qwen3ForCausalLM, encoder: Encoder, questions: list[str], max_new_tokens: int, batch_size: int = 512
) -> list[str]:
    """Greedy responses (decoded, special tokens skipped) via ``model.generate`` on left-padded prompts."""
    model.eval()
    out: list[str] = []
    for start in range(0, len(questions), batch_size):
        prompts = [encoder.prompt(q) for q in questions[start : start + batch_size]]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), encoder.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        gen = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=encoder.eos_id,
            pad_token_id=encoder.pad_id,
        )
        out.extend(encoder.tokenizer.batch_decode(gen[:, width:], skip_special_tokens=True))
    return out


def exact_match(model: Qwen3ForCausalLM, encoder: Encoder, pairs: list[tuple[str, str]], max_new_tokens: int) -> float:
    """Fraction of greedy responses that equal the answer exactly (after stripping whitespace)."""
    if not pairs:
        return float("nan")
    answers = greedy_answers(model, encoder, [q for q, _ in pairs], max_new_tokens)
    return sum(r.strip() == a for r, (_, a) in zip(answers, pairs)) / len(pairs)


def _lr_at(step: int, spec: TrainSpec) -> float:
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return spec.lr * (spec.min_lr_ratio + (1 - spec.min_lr_ratio) * cosine)


def train_supervised(
    model: Qwen3ForCausalLM,
    encoder: Encoder,
    task: Task,
    spec: TrainSpec,
    seed: int,
    exclude: set[str],
    select_pairs: list[tuple[str, str]],
    progress: Callable[[str], None] | None = None,
    prune: Callable[[list[Snapshot]], None] | None = None,
) -> list[Snapshot]:
    """Train in place for ``spec.steps``; return snapshots: step 0, every ``eval_every`` steps until
    one reaches ``fine_until`` accuracy on ``select_pairs``, then every ``coarse_eval_every``, and the last.

    ``prune(snapshots)``, called after each snapshot, may empty the ``state_dict`` of those no longer
    needed (a 135M-parameter model's weights are 540 MB a snapshot); by default every snapshot keeps them."""
    rng = random.Random(f"sft/{task.name}/{seed}")
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.98),
    )
    max_new = task.max_answer_chars + 1
    snapshots: list[Snapshot] = []
    t0 = time.perf_counter()

    def snap(step: int, loss: float | None) -> None:
        acc = exact_match(model, encoder, select_pairs, max_new)
        snapshots.append(Snapshot(step, acc, copy.deepcopy(model.state_dict())))
        if prune is not None:
            prune(snapshots)
        if progress is not None:
            loss_s = "" if loss is None else f" loss {loss:.4f}"
            progress(f"step {step:5d}/{spec.steps}{loss_s} select-acc {acc:.3f} ({time.perf_counter() - t0:.0f}s)")

    snap(0, None)
    for step in range(spec.steps):
        pairs = []
        while len(pairs) < spec.batch_size:
            q, a = task.draw(rng)
            if q not in exclude:
                pairs.append((q, a))
        ids, mask, labels = make_batch(encoder, pairs)
        model.train()
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, spec)
        logits = model(input_ids=ids, attention_mask=mask).logits
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = step + 1
        every = spec.coarse_eval_every if max(s.accuracy for s in snapshots) >= spec.fine_until else spec.eval_every
        if done % every == 0 or done == spec.steps:
            snap(done, loss.item())
    return snapshots
