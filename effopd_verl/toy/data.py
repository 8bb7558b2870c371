"""The splits of a task and their parquet files in verl's RL format.

One row: ``data_source`` (``effopd_toy/<task>``), ``prompt`` (chat messages), ``ability``,
``reward_model`` = ``{"style": "rule", "ground_truth": answer}``, ``extra_info`` = ``{"index",
"split", "question", "answer"}``. Splits never share a question. verl's ``RLHFDataset`` reads these
files as they are (``data.prompt_key=prompt``, the default).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from .tasks import Task, draw_unique
from .tokenizer import prompt_messages

ABILITY = "toy"
Messages = Callable[[str], list[dict[str, str]]]
"""The chat messages of a prompt, given its question."""


@dataclass(frozen=True)
class SplitSizes:
    """Row counts; ``train`` is capped by what the task's question space leaves after the others."""

    train: int
    val: int
    test: int
    select: int  # held out, not written: picks the student checkpoint


@dataclass
class Splits:
    train: list[tuple[str, str]]
    val: list[tuple[str, str]]
    test: list[tuple[str, str]]
    select: list[tuple[str, str]]

    def held_out(self) -> set[str]:
        """Questions supervised training must never see (val, test, select)."""
        return {q for part in (self.val, self.test, self.select) for q, _ in part}


def make_splits(task: Task, seed: int, sizes: SplitSizes) -> Splits:
    """Disjoint splits from ``random.Random(f"splits/{task}/{seed}")``: test, val, select, then train.

    A task with an enumerable question space is shuffled and cut (train gets what is left, up to
    ``sizes.train``); otherwise questions are drawn until distinct.
    """
    rng = random.Random(f"splits/{task.name}/{seed}")
    if task.enumerate_all is not None:
        pool = task.enumerate_all()
        rng.shuffle(pool)
        n_held = sizes.test + sizes.val + sizes.select
        if n_held >= len(pool):
            raise ValueError(f"task {task.name!r} has {len(pool)} questions; {n_held} held out leaves no training data")
        a, b, c = sizes.test, sizes.test + sizes.val, n_held
        return Splits(train=pool[c : c + sizes.train], val=pool[a:b], test=pool[:a], select=pool[b:c])
    test = draw_unique(task, rng, sizes.test)
    val = draw_unique(task, rng, sizes.val, exclude={q for q, _ in test})
    select = draw_unique(task, rng, sizes.select, exclude={q for q, _ in test + val})
    train = draw_unique(task, rng, sizes.train, exclude={q for q, _ in test + val + select})
    return Splits(train=train, val=val, test=test, select=select)


def to_frame(task: Task, pairs: list[tuple[str, str]], split: str, messages: Messages = prompt_messages) -> pd.DataFrame:
    """The rows of one split in verl's RL format; ``messages(question)`` gives the chat of a prompt."""
    return pd.DataFrame(
        {
            "data_source": [task.data_source] * len(pairs),
            "prompt": [messages(q) for q, _ in pairs],
            "ability": [ABILITY] * len(pairs),
            "reward_model": [{"style": "rule", "ground_truth": a} for _, a in pairs],
            "extra_info": [
                {"index": i, "split": split, "question": q, "answer": a} for i, (q, a) in enumerate(pairs)
            ],
        }
    )


def write_split(task: Task, pairs: list[tuple[str, str]], split: str, path: str, messages: Messages = prompt_messages) -> None:
    """Write one split as parquet (no pandas index column)."""
    to_frame(task, pairs, split, messages).to_parquet(path, index=False)
