"""The real-LM tasks: short questions with exact-match answers of at most 8 tokens.

Each is a :class:`effopd_verl.toy.tasks.Task` (the toy's task type, data split and reward code apply
as they are); the data source is ``effopd_toy/<name>``, the prefix the shared reward accepts. The
answers are digits, which SmolLM2's tokenizer encodes one token per digit, so ``max_answer_chars``
bounds the answer's tokens too (plus ``<|im_end|>``).

Measured on the quick build (4 supervised steps of 8): the base model answers ``n+1=`` in sentences
(0%), and 2 steps teach it the format: ``succ`` is then at 100%, it only lacked the format. ``add1``
(one carry in half the questions) and ``words`` are the ones the model half-knows.
"""

from __future__ import annotations

import functools

from ..toy.tasks import Task

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def number_words(n: int) -> str:
    """English words of ``0 <= n < 1000``: ``347`` -> ``"three hundred forty-seven"``."""
    if not 0 <= n < 1000:
        raise ValueError(f"number_words takes 0..999, got {n}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else "-" + ONES[n % 10])
    rest = n % 100
    return ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))


@functools.cache
def _pairs(name: str) -> tuple[tuple[str, str], ...]:
    """Every (question, answer) of a task, in a fixed order."""
    if name == "succ":
        return tuple((f"{n}+1=", str(n + 1)) for n in range(1000))
    if name == "words":
        return tuple((f"{number_words(n)} in digits:", str(n)) for n in range(1000))
    if name == "add1":
        return tuple((f"{a}+{b}=", str(a + b)) for a in range(10, 100) for b in range(1, 10))
    raise ValueError(f"no question list for {name!r}")


def _enumerated(name: str, description: str, max_question_chars: int, max_answer_chars: int) -> Task:
    """A task over the fixed list ``_pairs(name)``: draws are uniform over it; the splits cut a shuffled copy."""
    return Task(name=name, description=description, draw=lambda rng: rng.choice(_pairs(name)),
                max_question_chars=max_question_chars, max_answer_chars=max_answer_chars,
                enumerate_all=lambda: list(_pairs(name)))


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        _enumerated("succ", "n+1= with n in 0..999; answer n + 1", 6, 4),
        _enumerated("words", "'<n in English words> in digits:' with n in 0..999; answer n", 40, 3),
        _enumerated("add1", "a+b= with a in 10..99 and b in 1..9; answer a + b (half the sums carry)", 5, 3),
    )
}


def task_names() -> list[str]:
    """Registered task names, in registry order."""
    return list(TASKS)


def get_task(name: str) -> Task:
    """The task named ``name``; a clear error listing the names otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown LM task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]
