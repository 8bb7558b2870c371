#!/usr/bin/env python
"""Does EffOPD get there sooner? Vanilla OPD vs EffOPD vs fixed extrapolation, through ``effopd-train``
(verl 0.9.1's real trainer on the CPU toy task), measured on the held-out test split.

Arms (identical seeds, data order, batch and step budget; one ``effopd-train`` run each per seed):

  vanilla_tuned        vanilla OPD at the tuned lr (found by a sweep, see below)
  effopd_tlp_tuned     EffOPD, score=teacher_logprob, at the tuned lr (it must do no harm)
  vanilla_under        vanilla OPD at the under-stepped lr (tuned / --under-factor)
  effopd_reward_under  EffOPD, score=reward (the paper's), under-stepped
  effopd_tlp_under     EffOPD, score=teacher_logprob, under-stepped
  fixed2_under         fixed extrapolation baseline: θ_t + 2·d at every trigger, unscored (ExPO / AlphaOPD style)

Tuned lr: vanilla OPD at each ``--sweep-lrs`` value, seed = the first seed, the same step budget; the
lr with the highest final exact match on the toy's *validation* split (never the test split) wins.
The sweep's run at the winning lr is the vanilla_tuned run of that seed (same configuration).

Measurement: every run saves an actor checkpoint after every step; each checkpoint is scored offline
(a 0.4M-parameter model: a second) on the test split: greedy exact match (what verl's validation
computes; verl's own validation also runs at the last step as a cross-check) and the mean per-token
log-prob the student gives the teacher's greedy answers. Wall time is the sum of verl's
``timing_s/step`` (which includes EffOPD's search and excludes validation) minus checkpoint saving.

Per arm: best/final accuracy, steps and wall seconds to 50% and 90% of the vanilla gain at the same
lr (gain = vanilla's best test accuracy − the initial accuracy; first scored step at or above
initial + f·gain), search seconds and share of wall time, accepted α per trigger, cosine between
consecutive directions. Mean and spread over seeds. Top level (per seed, then mean):
  effopd_step_ratio   vanilla_under steps to 90% / the best EffOPD arm's (reward or teacher_logprob) under-stepped
  effopd_wall_ratio   the same in wall seconds
  tuned_lr_step_ratio vanilla_tuned steps to 90% / effopd_tlp_tuned's

    python scripts/bench_speedup.py --assets runs/toy_add --task add --seeds 0 1 2 \\
        --json runs/speedup_add.json --png runs/speedup_add.png --md runs/speedup_add.md

(64 steps × 256 prompts by default: ~14 min per run on 2 idle cores, up to 20 when shared; ``--quick`` is the demo's size.)

Runs are cached under --work (a finished run is reused when its command line is unchanged).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from effopd_verl.toy.build import ToyAssets, load_assets

REPO = Path(__file__).resolve().parents[1]
FRACTIONS = (0.5, 0.9)
ACC = "test_acc"
TLP = "test_teacher_logprob"
LOSS = "actor/distillation/loss"

ARMS = {
    # name: (lr kind, effopd overrides)
    "vanilla_tuned": ("tuned", []),
    "effopd_tlp_tuned": ("tuned", ["effopd.enable=true", "effopd.score=teacher_logprob"]),
    "vanilla_under": ("under", []),
    "effopd_reward_under": ("under", ["effopd.enable=true", "effopd.score=reward"]),
    "effopd_tlp_under": ("under", ["effopd.enable=true", "effopd.score=teacher_logprob"]),
    "fixed2_under": ("under", ["effopd.enable=true", "effopd.fixed_alpha=2"]),
}
VANILLA_OF = {"tuned": "vanilla_tuned", "under": "vanilla_under"}
EFFOPD_UNDER = ("effopd_reward_under", "effopd_tlp_under")


# ----------------------------------------------------------------------------- pure parts (tested)
def gain_targets(initial: float, vanilla_best: float, fractions=FRACTIONS) -> dict[float, float] | None:
    """Accuracy to reach for each fraction f of the vanilla gain: initial + f·(vanilla_best − initial).
    None when vanilla gained nothing (no target is meaningful)."""
    gain = vanilla_best - initial
    if not gain > 0:
        return None
    return {f: initial + f * gain for f in fractions}


def first_reach(xs: list[float], values: list[float], target: float, tol: float = 1e-9) -> float | None:
    """The first x (step or wall second) whose value is ≥ target; None if never."""
    for x, v in zip(xs, values):
        if v is not None and not math.isnan(v) and v >= target - tol:
            return x
    return None


def ratio(num: float | None, den: float | None) -> float | None:
    """num / den; None when either is missing or den is not positive."""
    if num is None or den is None or den <= 0:
        return None
    return num / den


def aggregate(values: list[float | None]) -> dict:
    """Mean, sample std, min, max over the present values; how many seeds had none."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    out = {"n": len(present), "missing": len(values) - len(present), "values": values}
    if present:
        out.update(mean=statistics.fmean(present), std=statistics.stdev(present) if len(present) > 1 else 0.0,
                   min=min(present), max=max(present))
    else:
        out.update(mean=None, std=None, min=None, max=None)
    return out


def median_step(wall: list[float]) -> float | None:
    """Median seconds of one step, from a cumulative wall-time list starting at 0."""
    diffs = [b - a for a, b in zip(wall, wall[1:])]
    return statistics.median(diffs) if diffs else None


def step_equivalents(curve: "Curve") -> list[float]:
    """Load-normalized wall time: every step counts 1, plus the EffOPD search seconds up to it in units of
    the run's median step (seconds on a shared machine inflate with other people's load; ratios within a
    run do much less)."""
    m = median_step(curve.wall)
    if not m:
        return []
    out, extra = [], 0.0
    for s in curve.steps:
        extra += curve.searches.get(s, {}).get("search_seconds", 0.0) / m
        out.append(s + extra)
    return out


def cumulative_wall(step_seconds: list[float]) -> list[float]:
    total, out = 0.0, []
    for s in step_seconds:
        total += s
        out.append(total)
    return out


@dataclass
class Curve:
    """One run, scored: per scored step (0 = the initial student) the test metrics and wall seconds."""

    steps: list[int]
    wall: list[float]
    acc: list[float]
    tlp: list[float] = field(default_factory=list)
    loss: dict[int, float] = field(default_factory=dict)
    searches: dict[int, dict] = field(default_factory=dict)  # step -> accepted_alpha, search_seconds, cosine, ...
    total_wall: float = 0.0
    verl_final_acc: float | None = None

    def to_json(self) -> dict:
        return {"steps": self.steps, "wall": self.wall, ACC: self.acc, TLP: self.tlp,
                "train_loss": {str(k): v for k, v in self.loss.items()},
                "searches": {str(k): v for k, v in self.searches.items()},
                "total_wall": self.total_wall, "verl_final_acc": self.verl_final_acc}

    @classmethod
    def from_json(cls, d: dict) -> "Curve":
        return cls(d["steps"], d["wall"], d[ACC], d.get(TLP, []), {int(k): v for k, v in d.get("train_loss", {}).items()},
                   {int(k): v for k, v in d.get("searches", {}).items()}, d.get("total_wall", 0.0), d.get("verl_final_acc"))


def arm_figures(curve: Curve, vanilla: Curve) -> dict:
    """One seed's figures for one arm, thresholds from the vanilla run at the same lr and seed."""
    out = {"initial_acc": curve.acc[0], "best_acc": max(curve.acc), "final_acc": curve.acc[-1],
           "final_teacher_logprob": curve.tlp[-1] if curve.tlp else None,
           "best_teacher_logprob": max(curve.tlp) if curve.tlp else None,
           "wall_seconds": curve.total_wall}
    targets = gain_targets(vanilla.acc[0], max(vanilla.acc))
    for f in FRACTIONS:
        key = f"{int(f * 100)}"
        out[f"target_acc_{key}"] = targets[f] if targets else None
        out[f"steps_to_{key}"] = first_reach(curve.steps, curve.acc, targets[f]) if targets else None
        out[f"wall_to_{key}"] = first_reach(curve.wall, curve.acc, targets[f]) if targets else None
    # the machine is shared: seconds inflate with other people's load. Wall time in units of this run's
    # own median step (steps plus search overhead, load-normalized) is also reported.
    step_eq = step_equivalents(curve)
    out["median_step_seconds"] = median_step(curve.wall)
    out["step_equivalents"] = step_eq[-1] if step_eq else None
    for f in FRACTIONS:
        key = f"{int(f * 100)}"
        out[f"stepeq_to_{key}"] = first_reach(step_eq, curve.acc, targets[f]) if targets and step_eq else None
    search = sum(s.get("search_seconds", 0.0) for s in curve.searches.values())
    out["search_seconds"] = search
    out["search_share"] = search / curve.total_wall if curve.total_wall > 0 else None
    out["accepted_alpha"] = {str(k): s.get("accepted_alpha") for k, s in sorted(curve.searches.items())}
    out["direction_cosine"] = {str(k): s["direction_cosine"] for k, s in sorted(curve.searches.items())
                               if s.get("direction_cosine") is not None}
    return out


def summarize(curves: dict[str, dict[int, Curve]]) -> tuple[dict, dict]:
    """Per arm: per-seed figures and their aggregate; top-level ratios (per seed, then aggregated)."""
    arms: dict[str, dict] = {}
    for arm, by_seed in curves.items():
        vanilla_arm = VANILLA_OF[ARMS[arm][0]]
        per_seed = {s: arm_figures(c, curves[vanilla_arm][s]) for s, c in by_seed.items() if s in curves.get(vanilla_arm, {})}
        numeric = sorted({k for f in per_seed.values() for k, v in f.items() if isinstance(v, (int, float)) or v is None})
        arms[arm] = {"per_seed": {str(s): f for s, f in per_seed.items()},
                     "mean": {k: aggregate([f.get(k) for f in per_seed.values()]) for k in numeric}}
    top: dict[str, dict] = {}

    def per_seed_ratio(vanilla: str, candidates: tuple[str, ...], key: str) -> dict:
        values = []
        for s in curves.get(vanilla, {}):
            v = arms[vanilla]["per_seed"][str(s)][key]
            best = [arms[a]["per_seed"][str(s)][key] for a in candidates if a in arms and str(s) in arms[a]["per_seed"]]
            best = [b for b in best if b is not None]
            values.append(ratio(v, min(best)) if best else None)
        return aggregate(values)

    if "vanilla_under" in arms:
        top["effopd_step_ratio"] = per_seed_ratio("vanilla_under", EFFOPD_UNDER, "steps_to_90")
        top["effopd_wall_ratio"] = per_seed_ratio("vanilla_under", EFFOPD_UNDER, "wall_to_90")
        top["effopd_step_ratio_50"] = per_seed_ratio("vanilla_under", EFFOPD_UNDER, "steps_to_50")
        top["effopd_stepeq_ratio"] = per_seed_ratio("vanilla_under", EFFOPD_UNDER, "stepeq_to_90")
    if "vanilla_tuned" in arms:
        top["tuned_lr_step_ratio"] = per_seed_ratio("vanilla_tuned", ("effopd_tlp_tuned",), "steps_to_90")
        top["tuned_lr_wall_ratio"] = per_seed_ratio("vanilla_tuned", ("effopd_tlp_tuned",), "wall_to_90")
    return arms, top


def pick_tuned_lr(val_acc_by_lr: dict[float, float]) -> float:
    """The lr with the highest validation accuracy; ties go to the smaller lr."""
    return max(sorted(val_acc_by_lr), key=lambda lr: (val_acc_by_lr[lr], -lr))


def fmt(v, digits=3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(arms: dict, top: dict, lrs: dict[str, float]) -> str:
    def ms(a, k, d=3):
        m = arms[a]["mean"].get(k)
        if not m or m["mean"] is None:
            return "never" if m and m["missing"] else "—"
        s = fmt(m["mean"], d)
        if m["n"] > 1:
            s += f"±{fmt(m['std'], d)}"
        if m["missing"]:
            s += f" ({m['missing']} never)"
        return s

    head = ["arm", "lr", "best acc", "final acc", "final tlp", "steps→50%", "steps→90%", "wall→50% s", "wall→90% s",
            "wall s", "step-eq→90%", "search s (share)", "accepted α at trigger (per seed, /)", "cos(d_t, d_prev) (per seed, /)"]
    rows = []
    for a in ARMS:
        if a not in arms:
            continue
        seeds = list(arms[a]["per_seed"].values())
        alphas = " / ".join(",".join(f"{k}:{v:g}" if isinstance(v, (int, float)) else f"{k}:{v}" for k, v in f["accepted_alpha"].items())
                            for f in seeds).strip(" /") or "—"
        cos = " / ".join(",".join(f"{k}:{v:.2f}" for k, v in f["direction_cosine"].items()) for f in seeds).strip(" /") or "—"
        share = arms[a]["mean"].get("search_share", {}).get("mean")
        rows.append([a, f"{lrs[ARMS[a][0]]:.0e}", ms(a, "best_acc"), ms(a, "final_acc"), ms(a, "final_teacher_logprob"),
                     ms(a, "steps_to_50", 1), ms(a, "steps_to_90", 1), ms(a, "wall_to_50", 0), ms(a, "wall_to_90", 0),
                     ms(a, "wall_seconds", 0), ms(a, "stepeq_to_90", 1), f"{ms(a, 'search_seconds', 1)} ({fmt(share, 3)})", alphas, cos])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")
    for k, v in top.items():
        vals = ", ".join(fmt(x, 2) if x is not None else "never" for x in v["values"])
        lines.append(f"{k}: mean {fmt(v['mean'], 2)} (per seed: {vals})")
    return "\n".join(lines)


def searches_from_metrics(metrics: dict[int, dict]) -> dict[int, dict]:
    """Per trigger step, what EffOPD logged: accepted α, search seconds, candidates scored, ‖d‖, cosine with
    the previous direction, the score of θ_t and of every candidate tried (``scores``: α → score)."""
    out = {}
    for step in sorted(metrics):
        m = metrics[step]
        if "effopd/accepted_alpha" not in m:
            continue
        scores = {k.removeprefix("effopd/score_alpha_"): v for k, v in m.items() if k.startswith("effopd/score_alpha_")}
        out[step] = {"accepted_alpha": m["effopd/accepted_alpha"], "search_seconds": m.get("effopd/search_seconds", 0.0),
                     "candidates_scored": m.get("effopd/candidates_scored"), "direction_norm": m.get("effopd/direction_norm"),
                     "score_base": m.get("effopd/score_base"), "score_best": m.get("effopd/score_best"),
                     "direction_cosine": m.get("effopd/geometry/direction_cosine"),
                     "scores": dict(sorted(scores.items(), key=lambda kv: float(kv[0])))}
    return out


def search_table(curves: dict[str, dict[int, Curve]]) -> str:
    """Every scored search: ‖d‖ and ‖d‖ per step of its window (t − previous trigger; the first trigger's
    window is its one step), the score of θ_t, each candidate's score, the accepted α. A straight path
    with steady steps keeps ‖d‖ per window step constant; a bending one makes it fall."""
    lines = ["| arm | seed | t | ‖d‖ | ‖d‖ per window step | score θ_t | candidates α: score | accepted α |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, by_seed in curves.items():
        for seed, curve in sorted(by_seed.items()):
            previous = 0
            for t, s in sorted(curve.searches.items()):
                window, previous = t - previous, t
                if not s.get("scores"):
                    continue  # unscored (the fixed-α baseline)
                norm = s.get("direction_norm")
                per_step = f"{norm / window:.4f}" if norm is not None else "—"
                cands = ", ".join(f"{a}: {v:.4f}" for a, v in s["scores"].items())
                lines.append(f"| {arm} | {seed} | {t} | {fmt(norm, 4)} | {per_step} | {fmt(s.get('score_base'), 4)} | "
                             f"{cands} | {s['accepted_alpha']:g} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def markdown(result: dict, command: str) -> str:
    """The benchmark as a Markdown page: how it was run (command, toy, lrs, measure), the table, the search log."""
    a, n = result["assets"], len(result["seeds"])
    sweep = ", ".join(f"{lr} → {acc:.3f}" for lr, acc in result["sweep_val_acc"].items()) or "none"
    lines = [
        f"# Speedup benchmark: `{result['task']}` toy ({n} seed{'s' if n > 1 else ''}, "
        f"{result['steps']} steps × {result['batch_prompts']} prompts)", "",
        "```bash", command, "```", "",
        f"- Toy: student {a['student_accuracy']:.3f}, teacher {a['teacher_accuracy']:.3f} greedy exact match on the "
        f"{a['num_rows'].get('test')}-prompt test split ({'quick' if a['quick'] else 'full'} build, seed {a['seed']}).",
        f"- Overrides for every run: {', '.join(f'`{o}`' for o in result['overrides']) or 'none'}; "
        f"EffOPD α grid: {result['effopd_alphas']}; {result['effopd_val_size']} validation prompts per search.",
        f"- Tuned lr {result['lr']['tuned']:g} ({result['tuned_lr_how']}; validation accuracy per lr: {sweep}); "
        f"under-stepped lr {result['lr']['under']:g} (÷{result['under_factor']:g}).",
        f"- Measured: {result['measure']}. {result['gain_definition']}.", "",
        result["table"], "",
    ]
    if result.get("search_table"):
        lines += ["Search log (every trigger of every scored EffOPD run):", "", result["search_table"], ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- scoring checkpoints
class Scorer:
    """Greedy exact match and teacher log-prob of a toy student on a parquet split (in process)."""

    def __init__(self, assets: ToyAssets, split_file: str):
        import pandas as pd
        import torch
        from transformers import AutoTokenizer, Qwen3ForCausalLM

        from effopd_verl.toy.train import Encoder, greedy_answers

        torch.set_num_threads(1)  # the machine is shared: one thread was as fast as two
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(assets.student_dir)
        self.encoder = Encoder(self.tokenizer)
        frame = pd.read_parquet(split_file)
        self.pairs = [(r["question"], r["answer"]) for r in frame["extra_info"]]
        self.max_new = int(assets.max_response_length or 8) + 1
        self.student_dir = assets.student_dir
        teacher = Qwen3ForCausalLM.from_pretrained(assets.teacher_dir).eval()
        self.teacher_answers = [a.strip() for a in greedy_answers(teacher, self.encoder, [q for q, _ in self.pairs], self.max_new)]
        self.model = Qwen3ForCausalLM.from_pretrained(self.student_dir).eval()
        self.initial = {k: v.clone() for k, v in self.model.state_dict().items()}

    def load(self, state: dict | None) -> None:
        if state is None:
            self.model.load_state_dict(self.initial)
            return
        state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).float() for k, v in state.items()}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        bad = [m for m in missing if "lm_head" not in m]  # tied embeddings may be saved once
        if bad or unexpected:
            raise RuntimeError(f"checkpoint does not fit the toy model: missing {bad[:5]}, unexpected {unexpected[:5]}")

    def greedy(self) -> list[str]:
        """The student's greedy answers to the split's questions."""
        from effopd_verl.toy.train import greedy_answers

        return greedy_answers(self.model, self.encoder, [q for q, _ in self.pairs], self.max_new)

    def score(self) -> tuple[float, float]:
        """(greedy exact match, mean per-token log-prob of the teacher's greedy answers, EOS included)."""
        torch = self.torch
        answers = self.greedy()
        acc = sum(r.strip() == a for r, (_, a) in zip(answers, self.pairs)) / len(self.pairs)
        from effopd_verl.toy.train import make_batch

        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(self.pairs), 1024):
                chunk = [(q, t) for (q, _), t in zip(self.pairs[i:i + 1024], self.teacher_answers[i:i + 1024])]
                ids, mask, labels = make_batch(self.encoder, chunk)
                logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1]
                target = labels[:, 1:]
                logp = torch.log_softmax(logits.float(), -1)
                valid = target != -100
                picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                total += float(picked[valid].sum())
                count += int(valid.sum())
        return acc, total / max(count, 1)


def load_checkpoint_state(step_dir: Path) -> dict:
    import torch

    files = sorted((step_dir / "actor").glob("model_world_size_1_rank_0.pt"))
    if not files:
        raise RuntimeError(f"no single-rank actor checkpoint in {step_dir}")
    return torch.load(files[0], map_location="cpu", weights_only=False)  # verl's own file (DTensors)


# ----------------------------------------------------------------------------- running effopd-train
def read_metrics(path: Path) -> dict[int, dict]:
    merged: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                merged.setdefault(int(r["step"]), {}).update(r.get("data", {}))
    return merged


def run_training(tag: str, run_dir: Path, assets: ToyAssets, args, lr: float, seed: int, extra: list[str]) -> dict[int, dict]:
    """One effopd-train run (cached by its command line); returns verl's logged metrics by step."""
    cmd = [
        sys.executable, "-m", "effopd_verl.main", "--config-name", "toy_cpu",
        *assets.run_overrides(val_file=assets.test_file),
        f"trainer.total_training_steps={args.steps}", "trainer.n_gpus_per_node=1",
        f"data.train_batch_size={args.batch}", f"actor_rollout_ref.actor.ppo_mini_batch_size={args.batch}",
        f"actor_rollout_ref.actor.optim.lr={lr:g}",
        f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}", f"effopd.seed={seed}",
        f"effopd.val_size={args.val_size}",
        "trainer.save_freq=1", "trainer.val_before_train=false",
        f"trainer.test_freq={args.verl_val_freq if args.verl_val_freq > 0 else -1}",
        "trainer.logger=[console,file]", "trainer.resume_mode=disable",
        *args.override, *extra,
    ]
    key = hashlib.sha256(json.dumps(cmd[1:]).encode()).hexdigest()[:16]
    done = run_dir / "DONE"
    if done.exists() and done.read_text().strip() == key:
        print(f"[bench] {tag}: cached ({run_dir})", flush=True)
        return read_metrics(run_dir / "metrics.jsonl")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    cmd += [f"trainer.default_local_dir={run_dir / 'checkpoints'}", f"hydra.run.dir={run_dir / 'hydra'}"]
    (run_dir / "command.json").write_text(json.dumps(cmd, indent=1))
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(run_dir / "metrics.jsonl"), "RAY_DEDUP_LOGS": "0",
           "PYTHONUNBUFFERED": "1"}
    start = time.time()
    print(f"[bench] {tag}: starting (lr {lr:g}, seed {seed}, {args.steps} steps, batch {args.batch})", flush=True)
    progress = re.compile(r"\bstep:(\d+) - ")
    last = -1
    with open(run_dir / "train.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
        for line in proc.stdout:
            log.write(line)
            for m in progress.finditer(line):
                k = int(m.group(1))
                if k != last:
                    last = k
                    print(f"[bench] {tag}: step {k}/{args.steps} ({time.time() - start:.0f}s)", flush=True)
            if "[effopd] step" in line and "accepted" in line:
                print(f"[bench] {tag}: {line.split('[effopd]', 1)[1].strip()}", flush=True)
        rc = proc.wait()
    if rc != 0:
        raise SystemExit(f"[bench] {tag}: effopd-train failed (exit {rc}); see {run_dir / 'train.log'}")
    print(f"[bench] {tag}: trained in {time.time() - start:.0f}s", flush=True)
    (run_dir / "curves.json").unlink(missing_ok=True)
    done.write_text(key)
    return read_metrics(run_dir / "metrics.jsonl")


def score_run(tag: str, run_dir: Path, metrics: dict[int, dict], scorers: dict[str, Scorer], args) -> dict[str, Curve]:
    """Score every checkpoint of a run on each split (cached in run_dir/curves.json); drop the checkpoints."""
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
            if name != "test" and s != steps[-1]:
                continue  # other splits (the sweep's validation split): the initial and the final weights only
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
    curves = {name: Curve([0] + steps if name == "test" else [0, steps[-1]], wall if name == "test" else [0.0, wall[-1]], acc, tlp, {s: metrics[s].get(LOSS) for s in steps}, searches, wall[-1],
                          verl_acc if name == "test" else None)
              for name, (acc, tlp) in results.items()}
    cache.write_text(json.dumps({k: c.to_json() for k, c in curves.items()}))
    if not args.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    c = curves.get("test") or next(iter(curves.values()))
    print(f"[bench] {tag}: test acc {c.acc[0]:.3f} → {c.acc[-1]:.3f} (best {max(c.acc):.3f}), "
          f"teacher log-prob {c.tlp[0]:.3f} → {c.tlp[-1]:.3f}, wall {c.total_wall:.0f}s"
          + (f", verl's own validation at the end {verl_acc:.3f}" if verl_acc is not None else ""), flush=True)
    return curves


# ----------------------------------------------------------------------------- plot
def plot(curves: dict[str, dict[int, Curve]], lrs: dict[str, float], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"vanilla_tuned": ("k", "-"), "effopd_tlp_tuned": ("tab:purple", "-"), "vanilla_under": ("k", "--"),
              "effopd_reward_under": ("tab:orange", "--"), "effopd_tlp_under": ("tab:blue", "--"),
              "fixed2_under": ("tab:red", ":")}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    for arm, by_seed in curves.items():
        color, ls = styles[arm]
        seeds = sorted(by_seed)
        n = min(len(by_seed[s].steps) for s in seeds)
        steps = by_seed[seeds[0]].steps[:n]
        mean = lambda attr: [statistics.fmean(getattr(by_seed[s], attr)[i] for s in seeds) for i in range(n)]
        acc, tlp = mean("acc"), mean("tlp")
        # seconds on this shared machine inflate with other people's load: plot wall time in units of
        # each run's own median step (load-normalized; raw seconds are in the JSON)
        wall = [statistics.fmean(step_equivalents(by_seed[s])[i] for s in seeds) for i in range(n)]
        label = f"{arm} (lr {lrs[ARMS[arm][0]]:.0e})"
        for row, ys in enumerate((acc, tlp)):
            for col, xs in enumerate((steps, wall)):
                ax = axes[row][col]
                ax.plot(xs, ys, color=color, linestyle=ls, label=label if (row, col) == (0, 0) else None, linewidth=1.4)
                trig = [i for i, s in enumerate(steps) if s in by_seed[seeds[0]].searches]
                ax.scatter([xs[i] for i in trig], [ys[i] for i in trig], color=color, marker="^", s=28, zorder=3)
    for row, name in enumerate(("test exact match", "test teacher log-prob (per token)")):
        for col, xname in enumerate(("global step", "steps + EffOPD search time in median steps of the run (load-normalized wall time)")):
            ax = axes[row][col]
            ax.set_xlabel(xname)
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
    for t in sorted({t for by_seed in curves.values() for c in by_seed.values() for t in c.searches}):
        for row in range(2):
            axes[row][0].axvline(t, color="gray", alpha=0.15)
    axes[0][0].legend(fontsize=7)
    nseeds = max(len(v) for v in curves.values())
    fig.suptitle(f"OPD on the toy task: mean over {nseeds} seed(s); ▲ EffOPD trigger (search or fixed jump)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", required=True, help="toy assets folder (scripts/build_toy_assets.py OUT)")
    p.add_argument("--task", default=None, help="add|reverse: checked against the assets")
    p.add_argument("--seed", type=int, action="append", help="seed (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds")
    p.add_argument("--steps", type=int, default=64, help="training steps per run (triggers 1, 2, 4, … ≤ steps)")
    p.add_argument("--batch", type=int, default=256, help="prompts per step (the paper's regime wants large batches: "
                                                          "less noise, better aligned directions)")
    p.add_argument("--sweep-lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3], help="lr sweep for the tuned lr")
    p.add_argument("--sweep-extend", type=int, default=2, help="times the grid may grow upwards (x3) while its top lr wins")
    p.add_argument("--tuned-lr", type=float, default=None, help="skip the sweep and use this tuned lr")
    p.add_argument("--under-factor", type=float, default=10.0, help="under-stepped lr = tuned lr / this (10-30)")
    p.add_argument("--val-size", type=int, default=128, help="EffOPD validation prompts (sampled from train)")
    p.add_argument("--verl-val-freq", type=int, default=None, help="verl's own test validation every K steps (default: last step only; 0: off)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra hydra override for every run (repeatable), e.g. distillation.distillation_loss.loss_mode=forward_kl_topk")
    p.add_argument("--alphas", type=float, nargs="+", default=None,
                   help="effopd.alphas for the searching EffOPD arms only (e.g. 0.5 1 1.5 2 3 4); the vanilla runs stay "
                        "cached, the EffOPD run folders are named after the grid")
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--quick", action="store_true", help="demo size: 12 steps, batch 64, sweep 1e-4 3e-4 1e-3, 1 seed")
    p.add_argument("--work", default="runs/bench_speedup", help="run folders (cached)")
    p.add_argument("--keep-checkpoints", action="store_true")
    p.add_argument("--runs-only", action="store_true",
                   help="train and score the arms (cached), no summary: to run arms as parallel processes, then summarize")
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None)
    p.add_argument("--md", default=None, help="also write the command, the setup, the table and the search log as Markdown")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.batch = min(args.steps, 12), min(args.batch, 64)
    seeds = (args.seed or []) + (args.seeds or []) or [0]
    if args.verl_val_freq is None:
        args.verl_val_freq = args.steps
    assets_dir = Path(args.assets).resolve()
    assets = load_assets(assets_dir)
    if args.task and args.task != assets.task:
        raise SystemExit(f"--task {args.task} but the assets at {assets_dir} are for {assets.task!r}")
    variant = "_" + hashlib.sha256(json.dumps(args.override).encode()).hexdigest()[:8] if args.override else ""
    work = Path(args.work).resolve() / f"{assets.task}_s{args.steps}_b{args.batch}{variant}"
    t0 = time.time()
    print(f"[bench] task {assets.task} (test {assets.num_rows['test']} prompts, student {assets.student_accuracy:.3f}, "
          f"teacher {assets.teacher_accuracy:.3f}); seeds {seeds}; {args.steps} steps × {args.batch} prompts; work {work}", flush=True)
    print("[bench] loading the scorers (teacher's greedy answers on test and val)", flush=True)
    scorers = {"test": Scorer(assets, assets.test_file), "val": Scorer(assets, assets.val_file)}

    def arm_run(tag, lr, seed, extra):
        run_dir = work / tag
        metrics = run_training(tag, run_dir, assets, args, lr, seed, extra)
        return score_run(tag, run_dir, metrics, scorers, args)

    # 1. the tuned lr: sweep on the validation split (seed = first seed)
    sweep = {}
    if args.tuned_lr is None:
        grid = sorted(args.sweep_lrs)
        while True:
            for lr in grid:
                if lr not in sweep:
                    c = arm_run(f"vanilla_lr{lr:g}_seed{seeds[0]}", lr, seeds[0], [])
                    sweep[lr] = c["val"].acc[-1]
                    print(f"[bench] sweep: lr {lr:g} → final validation accuracy {sweep[lr]:.3f}", flush=True)
            tuned = pick_tuned_lr(sweep)
            if tuned != max(grid) or len(grid) >= len(args.sweep_lrs) + args.sweep_extend:
                break
            grid.append(round(tuned * 3, 12))  # the best is the largest tried: extend the grid upwards
            print(f"[bench] sweep: the best lr is the largest tried; also trying {grid[-1]:g}", flush=True)
        how = (f"vanilla OPD at lr in {[f'{x:g}' for x in grid]} (upper end extended x3 while the best was the largest, "
               f"at most {args.sweep_extend} times), seed {seeds[0]}, {args.steps} steps x {args.batch} prompts; "
               f"picked the highest final exact match on the validation split ({assets.num_rows['val']} prompts, not test)")
    else:
        tuned, how = args.tuned_lr, "given on the command line (--tuned-lr)"
    lrs = {"tuned": tuned, "under": tuned / args.under_factor}
    print(f"[bench] tuned lr {lrs['tuned']:g}, under-stepped lr {lrs['under']:g}", flush=True)

    # 2. the arms
    curves: dict[str, dict[int, Curve]] = {}
    grid = [f"{a:g}" for a in args.alphas or []]
    for seed in seeds:
        for arm in args.arms:
            kind, extra = ARMS[arm]
            lr = lrs[kind]
            tag = f"vanilla_lr{lr:g}_seed{seed}" if not extra else f"{arm}_lr{lr:g}_seed{seed}"
            if grid and arm.startswith("effopd_"):
                extra = [*extra, f"effopd.alphas=[{','.join(grid)}]"]
                tag = f"{arm}_a{'-'.join(grid)}_lr{lr:g}_seed{seed}"
            curves.setdefault(arm, {})[seed] = arm_run(tag, lr, seed, extra)["test"]
    if args.runs_only:
        print(f"[bench] --runs-only: {len(curves)} arm(s) trained and scored under {work}", flush=True)
        return
    arms, top = summarize(curves)
    text = table(arms, top, lrs)
    searches = search_table(curves)
    print("\n" + text + "\n\n" + searches + "\n", flush=True)
    result = {
        "task": assets.task, "assets": {k: getattr(assets, k) for k in ("task", "seed", "quick", "teacher_accuracy", "student_accuracy", "num_rows")},
        "seeds": seeds, "steps": args.steps, "batch_prompts": args.batch, "overrides": args.override,
        "effopd_alphas": args.alphas or "default (2, 4, 6, 8, 10)", "effopd_val_size": args.val_size,
        "lr": lrs, "under_factor": args.under_factor, "tuned_lr_how": how,
        "sweep_val_acc": {f"{k:g}": v for k, v in sweep.items()},
        "measure": "test split, greedy exact match and teacher log-prob, scored from every step's checkpoint; "
                   "wall = sum of verl timing_s/step minus checkpoint saving (includes EffOPD search)",
        "gain_definition": "vanilla gain = vanilla best test acc - initial; steps_to_f = first scored step with acc >= initial + f*gain",
        **{k: v for k, v in top.items()},
        "arms": arms,
        "curves": {a: {str(s): c.to_json() for s, c in by.items()} for a, by in curves.items()},
        "table": text, "search_table": searches, "bench_seconds": time.time() - t0,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"[bench] wrote {args.json}")
    if args.md:
        os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
        Path(args.md).write_text(markdown(result, shlex.join(["python", "scripts/bench_speedup.py", *sys.argv[1:]])))
        print(f"[bench] wrote {args.md}")
    if args.png:
        plot(curves, lrs, args.png)
        print(f"[bench] wrote {args.png}")


if __name__ == "__main__":
    main()
