#!/usr/bin/env python
"""What would ``effopd.backoff_after`` have saved? A replay of recorded searches, not a training run.

For every EffOPD run in the benchmark JSONs (``scripts/bench_speedup.py --json``: each run's searches with
their step, accepted α and seconds) and every back-off setting (k in ``--k``, ``double`` and ``stop``), it
walks the recorded triggers in order and asks :class:`effopd_verl.core.schedule.TriggerSchedule` whether
each would still run, given the searches kept before it. The searches with back-off are a subset of the
base triggers, so every kept search was recorded. Per run: searches kept, search seconds skipped (and as a
share of the run's wall time, and in median steps), and the accepted jumps that would have been skipped:
the cost of the back-off.

A replay, not a run: it assumes each kept search accepts what it accepted in the recording. That holds up
to the first skipped search (the decision to skip it reads only searches that ran as recorded); a live run
differs after it: a search moves θ_anchor to θ_t even when it accepts nothing, so without it the next
search's direction spans a longer window and may score otherwise, and a skipped accepted jump would also
change the training after it. Everything after the first skip is an estimate.

    python scripts/backoff_replay.py --json docs/results/speedup_*.json \\
        --out docs/results/backoff_replay.json --md docs/results/backoff_replay.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from effopd_verl.bench.measures import Curve, aggregate, median_step
from effopd_verl.bench.tables import fmt
from effopd_verl.core.schedule import BACKOFFS, TriggerSchedule


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", nargs="+", required=True, type=Path, help="benchmark JSONs (scripts/bench_speedup.py --json)")
    p.add_argument("--k", nargs="+", type=int, default=[2, 3], help="effopd.backoff_after values to replay")
    p.add_argument("--first", type=int, default=1, help="effopd.first_trigger of the recorded runs")
    p.add_argument("--growth", type=int, default=2, help="effopd.growth of the recorded runs")
    p.add_argument("--out", type=Path, help="write the replay as JSON here")
    p.add_argument("--md", type=Path, help="write the table as Markdown here")
    return p.parse_args(argv)


def replay(schedule: TriggerSchedule, curve: Curve) -> dict:
    """One recorded run under ``schedule``: which searches run, what the skipped ones cost and saved."""
    recorded = sorted(curve.searches)
    base = schedule.triggers_up_to(recorded[-1])
    if recorded != base:
        raise ValueError(
            f"recorded searches at steps {recorded} are not the base triggers {base} of {schedule}: "
            "give the run's --first and --growth (a run with effopd.trigger_every cannot be replayed)"
        )
    kept: list[tuple[int, float]] = []
    for t in recorded:
        if schedule.is_trigger(t, kept):
            kept.append((t, curve.searches[t]["accepted_alpha"]))
    kept_steps = {t for t, _ in kept}
    skipped = [t for t in recorded if t not in kept_steps]
    saved = sum(curve.searches[t]["search_seconds"] for t in skipped)
    step = median_step(curve.wall)
    return {
        "recorded": recorded,
        "kept": sorted(kept_steps),
        "search_seconds": sum(s["search_seconds"] for s in curve.searches.values()),
        "saved_seconds": saved,
        "saved_share": saved / curve.total_wall if curve.total_wall else None,
        "saved_steps": saved / step if step else None,
        "first_skip": skipped[0] if skipped else None,
        "accepted_skipped": {t: curve.searches[t]["accepted_alpha"] for t in skipped if curve.searches[t]["accepted_alpha"]},
        "accepted_kept": {t: a for t, a in kept if a},
    }


def scored_runs(path: Path) -> dict[str, dict[str, Curve]]:
    """arm → seed → Curve for every arm whose runs scored candidates (EffOPD searches, not the fixed-α baseline)."""
    curves = json.loads(path.read_text())["curves"]
    out = {}
    for arm, by_seed in curves.items():
        runs = {seed: Curve.from_json(c) for seed, c in by_seed.items()}
        if any(s.get("candidates_scored") for c in runs.values() for s in c.searches.values()):
            out[arm] = runs
    return out


def rows(paths: list[Path], ks: list[int], first: int, growth: int) -> list[dict]:
    out = []
    for path in paths:
        for arm, runs in scored_runs(path).items():
            for k in ks:
                for mode in BACKOFFS:
                    schedule = TriggerSchedule(first, growth, backoff_after=k, backoff=mode)
                    per_seed = {seed: replay(schedule, c) for seed, c in sorted(runs.items())}
                    out.append({"file": path.name, "arm": arm, "backoff_after": k, "backoff": mode, "per_seed": per_seed,
                                **{key: aggregate([r[key] for r in per_seed.values()])
                                   for key in ("search_seconds", "saved_seconds", "saved_share", "saved_steps")}})
    return out


def table(replayed: list[dict]) -> str:
    def ms(agg, digits):
        return fmt(agg["mean"], digits) + (f"±{fmt(agg['std'], digits)}" if agg["n"] > 1 else "")

    def per_seed(row, key):
        text = " / ".join(",".join(f"{t}:{a:g}" for t, a in r[key].items()) or "none" for r in row["per_seed"].values())
        return text

    head = ["file", "arm", "seeds", "k", "backoff", "searches kept / recorded (per seed)", "search s", "saved s",
            "saved share of run", "saved median steps", "accepted jumps kept t:α", "accepted jumps skipped t:α"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in replayed:
        kept = " / ".join(f"{len(s['kept'])}/{len(s['recorded'])}" for s in r["per_seed"].values())
        lines.append("| " + " | ".join([
            r["file"].removesuffix(".json"), r["arm"], str(len(r["per_seed"])), str(r["backoff_after"]), r["backoff"], kept,
            ms(r["search_seconds"], 1), ms(r["saved_seconds"], 1), ms(r["saved_share"], 3), ms(r["saved_steps"], 2),
            per_seed(r, "accepted_kept"), per_seed(r, "accepted_skipped"),
        ]) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    replayed = rows(args.json, args.k, args.first, args.growth)
    text = table(replayed)
    print(text)
    command = "python scripts/backoff_replay.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    if args.out:
        args.out.write_text(json.dumps({"command": command, "note": __doc__.split("\n\n")[2].replace("\n", " "),
                                        "rows": replayed}, indent=1) + "\n")
    if args.md:
        args.md.write_text(f"# Back-off replay\n\n```bash\n{command}\n```\n\n{__doc__.split(chr(10) * 2)[1]}\n\n"
                           f"{__doc__.split(chr(10) * 2)[2]}\n\n{text}\n")


if __name__ == "__main__":
    main()
