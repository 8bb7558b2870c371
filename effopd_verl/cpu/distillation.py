"""Teach verl's teacher-config check the ``hf`` engine.

verl 0.9.1 checks top-k distillation settings per inference engine and raises
``NotImplementedError`` for any engine but vllm and sglang
(``DistillationTeacherModelConfig._validate_topk_logprobs``, ``verl/workers/config/distillation.py:217``).
The ``hf`` server returns any number of prompt log-probs per position, so for it the only check is
verl's own ``topk`` presence check; every other engine goes to verl's original method.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

from effopd_verl.cpu.verl_guard import require_verl

__all__ = ["HF_ENGINE", "install_topk_validation"]

HF_ENGINE = "hf"
_MARK = "__effopd_cpu_topk__"


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _validate_topk_logprobs(self: Any, use_topk: bool, topk: Optional[int]) -> None:
        if self.inference.name != HF_ENGINE:
            return original(self, use_topk=use_topk, topk=topk)
        if use_topk and (topk is None or topk < 1):
            raise ValueError(f"distillation top-k needs topk >= 1 with the {HF_ENGINE} teacher engine, got {topk}.")

    setattr(_validate_topk_logprobs, _MARK, True)
    return _validate_topk_logprobs


def install_topk_validation() -> None:
    """Wrap the teacher top-k check so the ``hf`` engine passes it (idempotent)."""
    require_verl("DistillationTeacherModelConfig._validate_topk_logprobs")
    from verl.workers.config.distillation import DistillationTeacherModelConfig

    current = DistillationTeacherModelConfig._validate_topk_logprobs
    if not getattr(current, _MARK, False):
        DistillationTeacherModelConfig._validate_topk_logprobs = _wrap(current)
