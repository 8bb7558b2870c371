"""The toy tasks: each draws (question, answer) pairs whose answer is checked by exact match.

A task is deterministic given a ``random.Random``; the registry maps a variant name (what
``--task`` takes) to its task. Questions and answers use only characters of the toy tokenizer's
alphabet (:data:`effopd_verl.toy.tokenizer.CHARS`) and stay short (≤ 16 characters), so a prompt
with its chat template is ≤ 20 tokens and an answer with its end-of-turn token ≤ 12.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import Callable

DATA_SOURCE_PREFIX = "effopd_toy/"


@dataclass(frozen=True)
class Task:
    """One task variant.

    ``draw(rng)`` returns ``(question, answer)``; ``answer`` is the only correct response (no
    leading or trailing whitespace). ``max_answer_chars`` bounds ``len(answer)`` (the rollout's
    response length must allow it plus the end-of-turn token).
    """

    name: str
    description: str
    draw: Callable[[random.Random], tuple[str, str]]
    max_question_chars: int
    max_answer_chars: int
    enumerate_all: Callable[[], list[tuple[str, str]]] | None = None
    """Every (question, answer) in a fixed order, for tasks whose question space is small."""

    @property
    def data_source(self) -> str:
        """The ``data_source`` column of this task's parquet rows (``effopd_toy/<name>``)."""
        return DATA_SOURCE_PREFIX + self.name


def solve_add(question: str) -> str:
    """The answer to ``"a+b="``: the decimal sum, no leading zeros."""
    lhs = question.removesuffix("=")
    a, b = lhs.split("+")
    return str(int(a) + int(b))


def solve_reverse(question: str) -> str:
    """The answer to ``"rev:xyz="``: the characters between ``:`` and ``=`` reversed."""
    word = question.removeprefix("rev:").removesuffix("=")
    return word[::-1]


def _draw_add(digits: int) -> Callable[[random.Random], tuple[str, str]]:
    hi = 10**digits - 1

    def draw(rng: random.Random) -> tuple[str, str]:
        a, b = rng.randint(0, hi), rng.randint(0, hi)
        question = f"{a}+{b}="
        return question, str(a + b)

    return draw


def _all_add(digits: int) -> Callable[[], list[tuple[str, str]]]:
    def enumerate_all() -> list[tuple[str, str]]:
        return [(f"{a}+{b}=", str(a + b)) for a in range(10**digits) for b in range(10**digits)]

    return enumerate_all


def _draw_reverse(min_len: int, max_len: int, alphabet: str) -> Callable[[random.Random], tuple[str, str]]:
    def draw(rng: random.Random) -> tuple[str, str]:
        n = rng.randint(min_len, max_len)
        word = "".join(rng.choice(alphabet) for _ in range(n))
        return f"rev:{word}=", word[::-1]

    return draw


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task(
            name="add",
            description="a+b= with a, b uniform in 0..99; answer the decimal sum",
            draw=_draw_add(2),
            max_question_chars=6,
            max_answer_chars=3,
            enumerate_all=_all_add(2),
        ),
        Task(
            name="reverse",
            description="rev:w= with w 4..8 lowercase letters; answer w reversed",
            draw=_draw_reverse(4, 8, string.ascii_lowercase),
            max_question_chars=13,
            max_answer_chars=8,
        ),
    )
}


def task_names() -> list[str]:
    """Registered variant names, in registry order."""
    return list(TASKS)


def get_task(name: str) -> Task:
    """The task named ``name``; a clear error listing the names otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown toy task {name!r}; known: {', '.join(TASKS)}") from None


def draw_unique(task: Task, rng: random.Random, n: int, exclude: set[str] | None = None) -> list[tuple[str, str]]:
    """``n`` pairs with distinct questions, none in ``exclude``; deterministic given ``rng``'s state."""
    seen = set(exclude or ())
    out: list[tuple[str, str]] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"task {task.name!r}: cannot draw {n} distinct questions (got {len(out)})")
        question, answer = task.draw(rng)
        if question in seen:
            continue
        seen.add(question)
        out.append((question, answer))
    return out
