"""Scoring every step's checkpoint of a run, through the testbed the run was trained on.

A testbed (the toy task, a real LM, …) tells the benchmark three things (``Testbed``): which hydra config
trains on it, how to load its built assets, and how to score a student's weights on a split. Per scored
checkpoint the scorer gives

  exact match     = share of the split's prompts whose greedy answer equals the reference answer
  teacher log-prob = (1/N) Σ_i Σ_k log π_θ(y*_i,k | x_i, y*_i,<k), the mean per-token log-prob the student
                    gives the teacher's greedy answers y*_i (EOS included; N their total token count)

``score_run`` applies it to the initial student (step 0) and every checkpoint of a finished run on the
test split; other splits (the sweep's validation split) at every checkpoint when asked, else at the initial
and final weights only. The curves are cached in the run folder (``curves.json``); the checkpoints are
then deleted unless kept. A testbed is named on the command line as ``toy`` or as ``module:attribute``.
"""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from effopd_verl.bench.measures import LOSS, Curve, cumulative_wall, searches_from_metrics

TESTBEDS = {"toy": "effopd_verl.bench.toy_testbed:TOY", "smollm2": "effopd_verl.lm.testbed:SMOLLM2"}
"""Testbeds by name; any other ``module:attribute`` naming a ``Testbed`` works too."""


class Scores(NamedTuple):
    exact_match: float
    teacher_logprob: float


class Assets(Protocol):
    """What the benchmark reads of a testbed's built assets (``effopd_verl.toy.build.ToyAssets`` has it)."""

    task: str
    seed: int
    quick: bool
    teacher_accuracy: float
    student_accuracy: float
    num_rows: dict[str, int]
    test_file: str
    val_file: str

    def run_overrides(self, val_file: str | None = None) -> list[str]:
        """The hydra overrides that point a run of the testbed's config at these assets (verl's validation
        on ``val_file``)."""


class CheckpointScorer(Protocol):
    """Scores one split; holds the student model, the split and the teacher's greedy answers on it."""

    def load(self, state: dict | None) -> None:
        """Load a checkpoint's weights (name → float tensor, from ``load_checkpoint_state``); None: the
        initial student."""

    def score(self) -> Scores:
        """Greedy exact match and teacher log-prob of the loaded weights on the split."""


@runtime_checkable
class Testbed(Protocol):
    name: str
    """Short name, in the run folder (``<task>_s<steps>_b<batch>`` for the toy) and the page title."""
    config_name: str
    """The hydra config ``effopd-train`` runs (``--config-name``)."""

    def load_assets(self, path: str | Path) -> Assets:
        """The assets a completed build left in ``path``."""

    def scorer(self, assets: Assets, split_file: str) -> CheckpointScorer:
        """A scorer for one parquet split of these assets."""


def resolve_testbed(spec: str) -> Testbed:
    """``toy`` (a key of ``TESTBEDS``) or ``module:attribute`` → the testbed object."""
    target = TESTBEDS.get(spec, spec)
    module, sep, attr = target.partition(":")
    if not sep:
        raise ValueError(f"--testbed {spec!r}: expected one of {sorted(TESTBEDS)} or module:attribute")
    try:
        testbed = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"--testbed {spec!r}: cannot load {target} ({e})") from None
    if not isinstance(testbed, Testbed):
        raise ValueError(f"--testbed {spec!r}: {target} lacks name, config_name, load_assets or scorer")
    return testbed


def load_checkpoint_state(step_dir: Path) -> dict:
    """The actor weights verl saved at one step (single rank), as plain float32 tensors."""
    import torch

    files = sorted((step_dir / "actor").glob("model_world_size_1_rank_0.pt"))
    if not files:
        raise RuntimeError(f"no single-rank actor checkpoint in {step_dir}")
    state = torch.load(files[0], map_location="cpu", weights_only=False)  # verl's own file (DTensors)
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).float() for k, v in state.items()}


def score_run(tag: str, run_dir: Path, metrics: dict[int, dict], scorers: dict[str, CheckpointScorer],
              keep_checkpoints: bool = False, every_step: tuple[str, ...] = ("test",)) -> dict[str, Curve]:
    """Score a finished run's checkpoints on each split (``every_step``: the splits scored at every
    checkpoint; the others at the initial and final weights); cached in run_dir/curves.json."""
    cache = run_dir / "curves.json"
    if cache.exists():
        saved = json.loads(cache.read_text())
        if set(saved) >= set(scorers):
            curves = {k: Curve.from_json(v) for k, v in saved.items()}
            for c in curves.values():
                c.searches = searches_from_metrics(metrics)  # from the run's own log (cached curves may predate a field)
            return curves
    steps = sorted(s for s in metrics if s >= 1)
    step_time = [metrics[s].get("timing_s/step", 0.0) - metrics[s].get("timing_s/save_checkpoint", 0.0) for s in steps]
    wall = [0.0] + cumulative_wall(step_time)
    results = {name: ([], []) for name in scorers}
    for name, scorer in scorers.items():
        scorer.load(None)
        a, t = scorer.score()
        results[name][0].append(a)
        results[name][1].append(t)
    for s in steps:
        state = load_checkpoint_state(run_dir / "checkpoints" / f"global_step_{s}")
        for name, scorer in scorers.items():
            if name not in every_step and s != steps[-1]:
                continue
            scorer.load(state)
            a, t = scorer.score()
            results[name][0].append(a)
            results[name][1].append(t)
    searches = searches_from_metrics(metrics)
    verl_acc = None
    for s in reversed(steps):
        vals = [v for k, v in metrics[s].items() if k.startswith("val-core/") and k.endswith("mean@1")]
        if vals:
            verl_acc = vals[0]
            break
    loss = {s: metrics[s].get(LOSS) for s in steps}
    curves = {name: Curve([0] + steps if name in every_step else [0, steps[-1]],
                          wall if name in every_step else [0.0, wall[-1]], acc, tlp, loss, searches, wall[-1],
                          verl_acc if name == "test" else None)
              for name, (acc, tlp) in results.items()}
    cache.write_text(json.dumps({k: c.to_json() for k, c in curves.items()}))
    if not keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    c = curves.get("test") or next(iter(curves.values()))
    print(f"[bench] {tag}: test acc {c.acc[0]:.3f} → {c.acc[-1]:.3f} (best {max(c.acc):.3f}), "
          f"teacher log-prob {c.tlp[0]:.3f} → {c.tlp[-1]:.3f}, wall {c.total_wall:.0f}s"
          + (f", verl's own validation at the end {verl_acc:.3f}" if verl_acc is not None else ""), flush=True)
    return curves
