"""The toy task as a benchmark testbed: assets from ``scripts/build_toy_assets.py``, trained with the
``toy_cpu`` config, scored in process (a 0.4M-parameter model: about a second per checkpoint and split)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from effopd_verl.bench.checkpoint_scores import Scores
from effopd_verl.toy.build import ToyAssets, load_assets


class ToyScorer:
    """Greedy exact match and teacher log-prob of a student on a parquet split (in process).

    ``encoder``: the class that turns questions and answers into token ids as the rollout sees them
    (default the toy's :class:`effopd_verl.toy.train.Encoder`; the real LM's ``ChatEncoder``);
    ``threads``: torch threads while scoring."""

    def __init__(self, assets: ToyAssets, split_file: str, encoder: type | None = None, threads: int = 1):
        import pandas as pd
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from effopd_verl.toy.train import Encoder, greedy_answers

        torch.set_num_threads(threads)  # the toy on a shared machine: one thread was as fast as two
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(assets.student_dir)
        self.encoder = (encoder or Encoder)(self.tokenizer)
        frame = pd.read_parquet(split_file)
        self.pairs = [(r["question"], r["answer"]) for r in frame["extra_info"]]
        self.max_new = int(assets.max_response_length or 8) + 1
        teacher = AutoModelForCausalLM.from_pretrained(assets.teacher_dir).eval()
        self.teacher_answers = [a.strip() for a in greedy_answers(teacher, self.encoder, [q for q, _ in self.pairs], self.max_new)]
        self.model = AutoModelForCausalLM.from_pretrained(assets.student_dir).eval()
        self.initial = {k: v.clone() for k, v in self.model.state_dict().items()}

    def load(self, state: dict | None) -> None:
        if state is None:
            self.model.load_state_dict(self.initial)
            return
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        bad = [m for m in missing if "lm_head" not in m]  # tied embeddings may be saved once
        if bad or unexpected:
            raise RuntimeError(f"checkpoint does not fit the toy model: missing {bad[:5]}, unexpected {unexpected[:5]}")

    def score(self) -> Scores:
        """(greedy exact match, mean per-token log-prob of the teacher's greedy answers, EOS included)."""
        from effopd_verl.toy.train import greedy_answers, make_batch

        torch = self.torch
        answers = greedy_answers(self.model, self.encoder, [q for q, _ in self.pairs], self.max_new)
        acc = sum(r.strip() == a for r, (_, a) in zip(answers, self.pairs)) / len(self.pairs)
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(self.pairs), 128):
                chunk = [(q, t) for (q, _), t in zip(self.pairs[i:i + 128], self.teacher_answers[i:i + 128])]
                ids, mask, labels = make_batch(self.encoder, chunk)
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
                target = labels[:, 1:]
                logp = torch.log_softmax(logits.float(), -1)
                valid = target != -100
                picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                total += float(picked[valid].sum())
                count += int(valid.sum())
        return Scores(acc, total / max(count, 1))


@dataclass(frozen=True)
class ToyTestbed:
    name: str = "toy"
    config_name: str = "toy_cpu"

    def load_assets(self, path: str | Path) -> ToyAssets:
        return load_assets(path)

    def scorer(self, assets: ToyAssets, split_file: str) -> ToyScorer:
        return ToyScorer(assets, split_file)


TOY = ToyTestbed()
