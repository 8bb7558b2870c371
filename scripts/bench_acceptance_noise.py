#!/usr/bin/env python
"""Acceptance under noise: the scores' measured noise and the false-accept rate of the paper's rule and the default.

Reads finished ``effopd-train`` runs of the toy (``scripts/bench_speedup.py ... --keep-checkpoints``, with
``--override effopd.noise_probe_repeats=N`` for the call noise), one or more per score; rebuilds each
search's θ_t and candidates from the checkpoints, scores them per prompt on the held-out split, pools the
first candidates' per-prompt differences into a null model, simulates ``--searches`` searches where no
candidate is better (``effopd_verl.bench.noise``), and replays every logged search under the default rule.

    python scripts/bench_acceptance_noise.py --assets /tmp/noise/toy_add \\
        --run reward=runs/noise_speedup/add_s16_b128_e2ad2f8c/effopd_reward_under_lr3e-05_seed0 \\
        --run teacher_logprob=runs/noise_speedup/add_s16_b128_e2ad2f8c/effopd_tlp_under_lr3e-05_seed0 \\
        --json docs/results/acceptance_noise.json --png docs/results/acceptance_noise.png
    python scripts/bench_acceptance_noise.py --replot docs/results/acceptance_noise.json \
        --png docs/results/acceptance_noise.png      # the plot again, from a JSON this script wrote
"""

from __future__ import annotations

import argparse
import json
import sys

from effopd_verl.core.config import SCORES, EffOPDConfig


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replot", default=None, metavar="JSON", help="only draw --png from this script's JSON")
    p.add_argument("--assets", default=None, help="the toy assets the runs trained on (scripts/build_toy_assets.py OUT)")
    p.add_argument("--run", action="append", default=[], metavar="SCORE=DIR", help="a finished run folder and its effopd.score")
    p.add_argument("--split", default="test", choices=["test", "val"], help="held-out split the models are scored on")
    p.add_argument("--sizes", type=int, nargs="+", default=[50, 128], help="validation prompts n of the simulated searches")
    p.add_argument("--searches", type=int, default=1000, help="simulated searches per rule and n")
    p.add_argument("--target", type=float, default=0.05, help="false-accept rate the default must not exceed")
    p.add_argument("--se-grid", type=float, nargs="+", default=[1.0, 1.5, 1.645, 2.0, 2.5, 3.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None)
    args = p.parse_args(argv)
    if args.replot and not args.png:
        p.error("--replot needs --png")
    if not args.replot and not args.assets:
        p.error("--assets is required (or --replot JSON --png PNG)")
    if not args.replot and not args.run:
        p.error("give at least one --run SCORE=DIR (or --replot JSON --png PNG)")
    args.runs = {}
    for spec in args.run:
        score, sep, folder = spec.partition("=")
        if not sep or score not in SCORES:
            p.error(f"--run {spec!r}: expected SCORE=DIR with SCORE one of {list(SCORES)}")
        args.runs.setdefault(score, []).append(folder)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        plot(saved["scores"], args.png, saved["target"])
        return 0
    from effopd_verl.bench import noise
    from effopd_verl.bench.toy_testbed import ToyScorer
    from effopd_verl.toy.build import load_assets

    assets = load_assets(args.assets)
    scorer = ToyScorer(assets, assets.test_file if args.split == "test" else assets.val_file)
    selects = EffOPDConfig().selects
    measured = {score: [noise.measure_run(d, scorer, selects) for d in dirs] for score, dirs in args.runs.items()}
    rules = {score: (EffOPDConfig(score=score).min_improvement, EffOPDConfig(score=score).min_improvement_se) for score in SCORES}
    scores = noise.summarize(measured, args.sizes, args.searches, args.target, args.se_grid, rules, seed=args.seed)
    replayed = noise.replay_searches(measured, rules)

    print(f"| score | n | call noise: sd of θ_t's score (searches probed) | prompts changed vs 1st candidate | rms δ "
          f"| false accepts, paper's rule (0, 0) | default rule | false accepts, default | smallest k ≤ {args.target:g} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for score, s in scores.items():
        call, pair, rule = s["call_noise"], s["paired_noise"], s["default_rule"]
        for n, r in s["false_accept"].items():
            print(f"| {score} | {n} | {call['max_score_sd']} ({call['searches_probed']}) | {pair['share_changed']:.3f} "
                  f"| {pair['rms']:.4f} | {r['paper']['false_accept_rate']:.3f} (mean α {r['paper']['mean_accepted_alpha']:.2f}) "
                  f"| ({rule['min_improvement']:g}, {rule['min_improvement_se']:g}) | {r['default']['false_accept_rate']:.3f} "
                  f"| {r['smallest_passing_se']} |")
    print("\n| score | step | logged candidates (α, Δ, SE, outcome) | α paper | α default | split gain of α paper: exact match, teacher log-prob (±SE) |")
    print("|---|---|---|---|---|---|")
    for row in replayed:
        logged = "; ".join(f"{a:g} {g:+.4f}±{se:.4f} {o}" for a, g, se, o in row["logged"])
        gain = row["paper_gain_on_split"]
        split = "—" if gain is None else (f"{gain['reward']['gain']:+.3f}±{gain['reward']['se']:.3f}, "
                                          f"{gain['teacher_logprob']['gain']:+.4f}±{gain['teacher_logprob']['se']:.4f}")
        print(f"| {row['score']} | {row['step']} | {logged} | {row['paper_alpha']:g} | {row['default_alpha']:g} | {split} |")

    result = {"command": "python " + " ".join(["scripts/bench_acceptance_noise.py", *(argv or sys.argv[1:])]),
              "assets": {k: getattr(assets, k) for k in ("task", "seed", "quick", "num_rows")}, "split": args.split,
              "split_prompts": len(scorer.pairs), "searches": args.searches, "target": args.target,
              "scores": scores, "replay": replayed,
              "runs": {score: [{"run": m["run"], "call_noise": m["call_noise"]} for m in ms] for score, ms in measured.items()}}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.png:
        plot(scores, args.png, args.target)
    return 0


def plot(scores: dict, path: str, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for score, s in scores.items():
        for n, r in s["false_accept"].items():
            ks = [0.0] + [float(k) for k in r["se_grid"]]
            ax.plot(ks, [r["paper"]["false_accept_rate"]] + list(r["se_grid"].values()), marker="o", label=f"{score}, n={n}")
    ax.axhline(target, color="grey", ls="--", lw=1)
    ax.set_xlabel("min_improvement_se k (0: the paper's rule)")
    ax.set_ylabel("false-accept rate (no candidate better)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
