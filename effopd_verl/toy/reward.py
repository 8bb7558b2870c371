"""The toy reward: 1.0 for an exact answer, else 0.0.

verl 0.9.1 loads it through ``reward.custom_reward_function.path`` / ``.name`` (``load_extern_object``:
a ``pkg://`` module path or a file path) and calls it with keyword arguments
``data_source, solution_str, ground_truth, extra_info`` (plus, with a reward model router, extra
keywords, accepted and ignored). ``solution_str`` is the response decoded with special tokens
skipped, so the end-of-turn token is already gone. This module imports nothing from the package:
verl may load it as a bare file.
"""

from __future__ import annotations

from typing import Any

REWARD_PKG_PATH = "pkg://effopd_verl.toy.reward"
REWARD_NAME = "compute_score"
DATA_SOURCE_PREFIX = "effopd_toy/"


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    **kwargs: Any,
) -> float:
    """Exact match of the stripped response against the ground truth (the whole response, not a substring).

    Surrounding whitespace is ignored; anything else (a leading zero, a trailing token, a second
    line) scores 0. A ``data_source`` outside the toy tasks is an error rather than a silent 0.
    """
    if not str(data_source).startswith(DATA_SOURCE_PREFIX):
        raise ValueError(f"effopd toy reward got data_source={data_source!r}; expected {DATA_SOURCE_PREFIX}<task>")
    if solution_str is None:
        return 0.0
    return 1.0 if str(solution_str).strip() == str(ground_truth).strip() else 0.0
