"""The benchmark's figures, from scored curves (pure; no training, no model).

A curve is one run scored from every step's checkpoint: test exact match ``acc_s`` at steps
s = 0 (the initial student), 1, …, T, and the wall seconds ``w_s`` (sum of verl's ``timing_s/step`` minus
checkpoint saving, so EffOPD's search is in it).

Per arm and seed, against the vanilla arm at the same lr and seed (gain G = max_s acc_vanilla − acc_0):
  target_f   = acc_0 + f·G                         (f = 0.5, 0.9; none when G ≤ 0)
  steps_to_f = the first scored step s with acc_s ≥ target_f (None: never)
  wall_to_f  = w at that step
  stepeq_to_f: the same on the step-equivalent axis e_s = s + (EffOPD search seconds up to s) / m, m the
               run's median step seconds (load-normalized wall time: seconds on a shared machine inflate
               with other people's load, ratios within one run much less).

Top-level ratios, per seed then mean ± std, min, max over seeds (``aggregate``):
  effopd_step_ratio   steps_to_90 of vanilla_under / the best under-stepped EffOPD arm's (reward or
                      teacher_logprob); effopd_wall_ratio, effopd_step_ratio_50, effopd_stepeq_ratio likewise
  tuned_lr_step_ratio steps_to_90 of vanilla_tuned / effopd_tlp_tuned's (tuned_lr_wall_ratio in seconds)

The headline against the best vanilla arm, whatever lr either side uses (``best_vanilla_headline``), per
seed over the arms that ran that seed:
  G*      = max over vanilla arms v of (max_s acc_v,s − acc_v,0)       (the best vanilla gain, any lr)
  target  = acc_0 + 0.9·G*                                             (acc_0 of the arm attaining G*)
  N_van   = min over vanilla arms of steps_to_target                   (the best vanilla arm: fewest steps)
  N_eff   = min over searching EffOPD arms (teacher_logprob or reward, any lr, any variant) of steps_to_target
  effopd_vs_best_vanilla_step_ratio   = N_van / N_eff
  effopd_vs_best_vanilla_stepeq_ratio = the same minima on the step-equivalent axis (counts the search)
The arm attaining G* reaches the target, so N_van always exists when G* > 0; the ratio is None for a
seed where no EffOPD arm reaches it. The fixed-α baseline is not an EffOPD arm here.

The lr sweep (``sweep_verdict``): an lr is stable when every logged training loss is finite (steps that logged none are skipped) and its
final validation exact match is at most ``tol`` below the best the run reached on validation; the tuned
lr is the stable one with the highest final validation exact match (ties: the smaller lr).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from effopd_verl.bench.arms import parse_arm

FRACTIONS = (0.5, 0.9)
HEADLINE_FRACTION = 0.9
ACC = "test_acc"
TLP = "test_teacher_logprob"
LOSS = "actor/distillation/loss"


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


def step_equivalents(curve: Curve) -> list[float]:
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


def _first_best(reach: dict[str, float | None]) -> tuple[str | None, float | None]:
    """The arm with the smallest reach (ties: the first in order), and that reach; (None, None) if none reached."""
    best = None
    for arm, x in reach.items():
        if x is not None and (best is None or x < reach[best]):
            best = arm
    return best, (reach[best] if best is not None else None)


def best_vanilla_headline(curves: dict[str, dict[int, Curve]], fraction: float = HEADLINE_FRACTION) -> tuple[dict, dict, list[dict]]:
    """The headline against the best vanilla arm (see the module docstring): (step ratio aggregate,
    step-equivalent ratio aggregate, per-seed details: target, which arm was best on each side, its steps
    and final accuracy). Seeds are those of the vanilla arms."""
    vanilla = [a for a in curves if parse_arm(a).method == "vanilla"]
    effopd = [a for a in curves if parse_arm(a).searching]
    seeds = sorted({s for a in vanilla for s in curves[a]})
    step_ratios, stepeq_ratios, details = [], [], []
    for seed in seeds:
        van = {a: curves[a][seed] for a in vanilla if seed in curves[a]}
        eff = {a: curves[a][seed] for a in effopd if seed in curves[a]}
        gains = {a: max(c.acc) - c.acc[0] for a, c in van.items()}
        gain_arm = max(gains, key=gains.get)
        targets = gain_targets(van[gain_arm].acc[0], max(van[gain_arm].acc), (fraction,))
        row = {"seed": seed, "initial_acc": van[gain_arm].acc[0], "best_gain_arm": gain_arm,
               "best_vanilla_gain": gains[gain_arm], "target_acc": targets[fraction] if targets else None}
        if targets is None or not eff:
            step_ratios.append(None)
            stepeq_ratios.append(None)
            details.append(row)
            continue
        target = targets[fraction]
        for axis, values in (("steps", step_ratios), ("stepeq", stepeq_ratios)):
            def reach(c: Curve):
                xs = c.steps if axis == "steps" else step_equivalents(c)
                return first_reach(xs, c.acc, target) if xs else None
            v_arm, v_x = _first_best({a: reach(c) for a, c in van.items()})
            e_arm, e_x = _first_best({a: reach(c) for a, c in eff.items()})
            row.update({f"best_vanilla_{axis}_arm": v_arm, f"best_vanilla_{axis}": v_x,
                        f"best_effopd_{axis}_arm": e_arm, f"best_effopd_{axis}": e_x})
            if axis == "steps":
                row["best_vanilla_final_acc"] = van[v_arm].acc[-1] if v_arm else None
                row["best_effopd_final_acc"] = eff[e_arm].acc[-1] if e_arm else None
            values.append(ratio(v_x, e_x))
        details.append(row)
    return aggregate(step_ratios), aggregate(stepeq_ratios), details


def gain_noise(curves: dict[str, dict[int, Curve]], n_test: int, z: float = 2.0) -> list[dict]:
    """Is the best vanilla gain larger than the test split's own noise? One row per seed.

    With p_0 = acc_0 and p* = the best vanilla accuracy, both measured on the same n_test prompts, the
    binomial standard error of their difference is at most se = √(p_0(1−p_0)/n + p*(1−p*)/n) (the unpaired
    bound). ``resolved`` is G* > z·se: below it every steps-to-90% ratio is a ratio of noise.

    >>> c = Curve(steps=[0, 1], wall=[0.0, 1.0], acc=[0.039, 0.062])
    >>> r = gain_noise({"vanilla_tuned": {0: c}}, n_test=512)[0]
    >>> round(r["gain"], 3), round(r["gain_prompts"]), round(r["se"], 3), r["resolved"]
    (0.023, 12, 0.014, False)
    """
    rows = []
    vanilla = [a for a in curves if parse_arm(a).method == "vanilla"]
    for seed in sorted({s for a in vanilla for s in curves[a]}):
        gains = {a: max(curves[a][seed].acc) - curves[a][seed].acc[0] for a in vanilla if seed in curves[a]}
        arm = max(gains, key=gains.get)
        p0, p1 = curves[arm][seed].acc[0], max(curves[arm][seed].acc)
        se = math.sqrt((p0 * (1 - p0) + p1 * (1 - p1)) / n_test)
        rows.append({"seed": seed, "arm": arm, "gain": gains[arm], "gain_prompts": gains[arm] * n_test, "se": se,
                     "z": z, "resolved": gains[arm] > z * se})
    return rows


def summarize(curves: dict[str, dict[int, Curve]]) -> tuple[dict, dict]:
    """Per arm: per-seed figures and their aggregate; top-level ratios (per seed, then aggregated)."""
    arms: dict[str, dict] = {}
    for arm, by_seed in curves.items():
        vanilla_arm = parse_arm(arm).vanilla
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

    effopd_under = ("effopd_reward_under", "effopd_tlp_under")
    if "vanilla_under" in arms:
        top["effopd_step_ratio"] = per_seed_ratio("vanilla_under", effopd_under, "steps_to_90")
        top["effopd_wall_ratio"] = per_seed_ratio("vanilla_under", effopd_under, "wall_to_90")
        top["effopd_step_ratio_50"] = per_seed_ratio("vanilla_under", effopd_under, "steps_to_50")
        top["effopd_stepeq_ratio"] = per_seed_ratio("vanilla_under", effopd_under, "stepeq_to_90")
    if "vanilla_tuned" in arms:
        top["tuned_lr_step_ratio"] = per_seed_ratio("vanilla_tuned", ("effopd_tlp_tuned",), "steps_to_90")
        top["tuned_lr_wall_ratio"] = per_seed_ratio("vanilla_tuned", ("effopd_tlp_tuned",), "wall_to_90")
    return arms, top


def pick_tuned_lr(val_acc_by_lr: dict[float, float], stable: dict[float, bool] | None = None) -> float:
    """The stable lr with the highest validation accuracy; ties go to the smaller lr (``stable``: lr → verdict;
    None: every lr counts as stable)."""
    candidates = [lr for lr in val_acc_by_lr if stable is None or stable.get(lr)]
    if not candidates:
        raise ValueError(f"every sweep lr was unstable ({sorted(val_acc_by_lr)}): add smaller rates to --sweep-lrs")
    return max(sorted(candidates), key=lambda lr: (val_acc_by_lr[lr], -lr))


def sweep_verdict(val: Curve, loss: dict[int, float | None], tol: float) -> dict:
    """One sweep run's stability (see the module docstring) from its validation curve and logged losses:
    final and best validation exact match, how many checkpoints were scored on validation, whether every
    loss was finite, and the verdict."""
    logged = [v for v in loss.values() if v is not None]
    finite = all(math.isfinite(v) for v in logged)
    best, final = max(val.acc), val.acc[-1]
    return {"val_acc_final": final, "val_acc_best": best, "val_points": len(val.acc), "losses_logged": len(logged),
            "loss_finite": finite,
            "stable": bool(finite and final >= best - tol)}
