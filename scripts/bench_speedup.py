#!/usr/bin/env python
"""Does EffOPD get there sooner? Vanilla OPD vs EffOPD vs fixed extrapolation, through ``effopd-train``
(verl 0.9.1's real trainer on a testbed: the CPU toy task by default), measured on the held-out test split.
The logic is in ``effopd_verl.bench`` (arms, runs, checkpoint scores, measures, tables); this is its command line.

Arms are named ``<method>_<rate>[-<variant>]`` (identical seeds, data order, batch and step budget; one
``effopd-train`` run each per seed). Methods: vanilla, effopd_tlp (score=teacher_logprob), effopd_reward
(score=reward, the paper's), fixed2 (θ_t + 2·d at every trigger, unscored). Rates: tuned, under
(tuned / --under-factor), x<F> (F × tuned), div<F> (tuned / F). The default arms are the historical six:

  vanilla_tuned  effopd_tlp_tuned  vanilla_under  effopd_reward_under  effopd_tlp_under  fixed2_under

``--lr-factors 3 1 1/3 0.1`` generates ``--methods`` (default vanilla and effopd_tlp) at each factor of the
tuned lr instead (vanilla_x3, effopd_tlp_x3, vanilla_tuned, …, vanilla_div3, …, vanilla_under at 0.1 with
the default --under-factor 10). A named variant carries its own overrides:
``--arms effopd_tlp_tuned-every4 --arm-override effopd_tlp_tuned-every4=effopd.trigger_every=4``.

Tuned lr: vanilla OPD at each ``--sweep-lrs`` value (first seed), scored on the *validation* split; the
stable lr with the highest final validation exact match wins (stable: every loss finite, final validation
exact match at most --stable-tol below the run's best). ``--sweep-until-unstable`` grows the grid upwards
until some lr is unstable. Measurement, figures and the headline against the best vanilla arm
(``effopd_vs_best_vanilla_step_ratio``, ``…_stepeq_ratio``): see ``effopd_verl.bench.measures``.

    python scripts/bench_speedup.py --assets runs/toy_add --task add --seeds 0 1 2 \\
        --json runs/speedup_add.json --png runs/speedup_add.png --md runs/speedup_add.md

(64 steps × 256 prompts by default: ~14 min per run on 2 idle cores, up to 20 when shared; ``--quick`` is the
demo's size.) Runs are cached under --work (a finished run is reused when its command line is unchanged);
``--dry-run`` lists the arms, their lrs and run folders (cached or not) and trains nothing.
``--curves-from`` an earlier ``--json`` of the same setup takes the curves whose run folders are gone from it
(the same run: overrides, lr and seed) instead of re-running them; the JSON records which (``curves_from``).
``--arm-seeds effopd_tlp_div3=0,2`` runs an arm at some of the seeds only; the headline takes, per seed, the arms
run at it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

from effopd_verl.bench import tables
from effopd_verl.bench.arms import LEGACY_ARMS, METHODS, arms_at_factors, build_arms, parse_factor, table_order
from effopd_verl.bench.checkpoint_scores import resolve_testbed
from effopd_verl.bench.measures import Curve, best_vanilla_headline, gain_noise, summarize
from effopd_verl.bench.runs import (EarlierCurves, RunSettings, Runner, effopd_defaults, run_is_cached, sweep_lr,
                                    train_command, work_folder)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--testbed", default="toy", help="toy, smollm2, or module:attribute naming an effopd_verl.bench Testbed")
    p.add_argument("--assets", required=True, help="the testbed's assets folder (toy: scripts/build_toy_assets.py OUT)")
    p.add_argument("--task", default=None, help="checked against the assets (toy: add|reverse)")
    p.add_argument("--seed", type=int, action="append", help="seed (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds")
    p.add_argument("--steps", type=int, default=64, help="training steps per run (triggers 1, 2, 4, … ≤ steps)")
    p.add_argument("--batch", type=int, default=256, help="prompts per step (the paper's regime wants large batches: "
                                                          "less noise, better aligned directions)")
    p.add_argument("--sweep-lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3], help="lr sweep for the tuned lr")
    p.add_argument("--sweep-extend", type=int, default=2, help="times the grid may grow upwards (x3 its largest lr)")
    p.add_argument("--sweep-until-unstable", action="store_true",
                   help="also grow the grid while no lr is unstable (default: only while the largest lr is the best)")
    p.add_argument("--stable-tol", type=float, default=0.05,
                   help="a sweep lr is unstable when its final validation exact match is more than this below its best")
    p.add_argument("--tuned-lr", type=float, default=None, help="skip the sweep and use this tuned lr")
    p.add_argument("--under-factor", type=float, default=10.0, help="under-stepped lr = tuned lr / this (10-30)")
    p.add_argument("--val-size", type=int, default=128, help="EffOPD validation prompts (sampled from train)")
    p.add_argument("--verl-val-freq", type=int, default=None, help="verl's own test validation every K steps (default: last step only; 0: off)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra hydra override for every run (repeatable), e.g. distillation.distillation_loss.loss_mode=forward_kl_topk")
    p.add_argument("--alphas", type=float, nargs="+", default=None,
                   help="effopd.alphas for the searching EffOPD arms only (e.g. 0.5 1 1.5 2 3 4); the vanilla runs stay "
                        "cached, the EffOPD run folders are named after the grid")
    p.add_argument("--arms", nargs="+", default=None, metavar="ARM",
                   help=f"arms <method>_<rate>[-<variant>] (default: {' '.join(LEGACY_ARMS)}, or none with --lr-factors)")
    p.add_argument("--lr-factors", nargs="+", default=None, metavar="F",
                   help="add --methods at each factor of the tuned lr (e.g. 3 1 1/3 0.1)")
    p.add_argument("--methods", nargs="+", default=["vanilla", "effopd_tlp"], choices=list(METHODS),
                   help="the methods --lr-factors generates")
    p.add_argument("--arm-override", action="append", default=[], metavar="ARM=KEY=VALUE",
                   help="extra hydra override of one EffOPD arm (repeatable), e.g. effopd_tlp_tuned-every4=effopd.trigger_every=4")
    p.add_argument("--arm-seeds", action="append", default=[], metavar="ARM=S[,S...]",
                   help="run this arm at these of --seeds only (repeatable), e.g. effopd_tlp_div3=0,2: the headline "
                        "takes, per seed, the arms run at it")
    p.add_argument("--quick", action="store_true", help="demo size: 12 steps, batch 64, sweep 1e-4 3e-4 1e-3, 1 seed")
    p.add_argument("--work", default="runs/bench_speedup", help="run folders (cached)")
    p.add_argument("--keep-checkpoints", action="store_true")
    p.add_argument("--curves-from", metavar="JSON",
                   help="an earlier --json of the same setup (testbed, task, assets, steps, batch, overrides): an arm whose "
                        "run is not under --work takes its curve from there (the same run overrides, lr and seed; EffOPD "
                        "arms also the same --val-size and effopd: defaults) instead of re-running")
    p.add_argument("--runs-only", action="store_true",
                   help="train and score the arms (cached), no summary: to run arms as parallel processes, then summarize")
    p.add_argument("--dry-run", action="store_true", help="list the arms, lrs and run folders (cached or not); train nothing")
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None)
    p.add_argument("--md", default=None, help="also write the command, the setup, the tables and the search log as Markdown")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.batch = min(args.steps, 12), min(args.batch, 64)
    if args.verl_val_freq is None:
        args.verl_val_freq = args.steps
    args.seeds = (args.seed or []) + (args.seeds or []) or [0]
    try:
        factors = [parse_factor(f) for f in args.lr_factors or []]
        names = (args.arms if args.arms is not None else ([] if factors else list(LEGACY_ARMS)))
        args.arm_set = build_arms(names + arms_at_factors(factors, args.under_factor, args.methods), args.arm_override)
        args.settings = RunSettings(args.steps, args.batch, args.val_size, args.verl_val_freq, tuple(args.override),
                                    args.keep_checkpoints)
        args.testbed = resolve_testbed(args.testbed)
    except ValueError as e:
        p.error(str(e))
    if not args.arm_set:
        p.error("no arms: give --arms or --lr-factors")
    try:
        args.seeds_of = arm_seeds(args.arm_seeds, [a.name for a in args.arm_set], args.seeds)
    except ValueError as e:
        p.error(str(e))
    if not args.under_factor > 0:
        p.error("--under-factor must be positive")
    return args


def arm_seeds(specs: list[str], arms: list[str], seeds: list[int]) -> dict[str, list[int]]:
    """arm → the seeds it runs at: ``--seeds``, or those an ``ARM=S,S`` spec lists (a subset of ``--seeds``)."""
    out = {a: list(seeds) for a in arms}
    for spec in specs:
        arm, sep, listed = spec.partition("=")
        try:
            chosen = [int(x) for x in listed.split(",")] if sep else []
        except ValueError:
            chosen = []
        if arm not in out or not chosen or not set(chosen) <= set(seeds):
            raise ValueError(f"--arm-seeds {spec!r}: expected ARM=S[,S...] with ARM one of {arms} and each S one of "
                             f"--seeds {seeds}")
        out[arm] = [s for s in seeds if s in chosen]
    return out


def arm_lrs(args, tuned: float) -> dict[str, float]:
    """rate → lr: tuned and under always (the JSON's historical keys), then every arm's rate."""
    lrs = {"tuned": tuned, "under": tuned / args.under_factor}
    for arm in args.arm_set:
        lrs.setdefault(arm.rate, arm.lr(tuned, args.under_factor))
    return lrs


def dry_run(args, assets, work: Path, earlier: EarlierCurves | None) -> None:
    """The plan: each arm's lr and run folder per seed, and whether a finished run of that command is cached (or
    its curve is in the earlier JSON)."""
    tuned = args.tuned_lr
    print(f"[bench] dry run: tuned lr {'%g' % tuned if tuned else 'from the sweep over ' + str(args.sweep_lrs)}")
    for arm in args.arm_set:
        factor = arm.factor(args.under_factor)
        if tuned is None:
            print(f"[bench]   {arm.name}: lr = {factor:g} × tuned" + (f", overrides {list(arm.overrides)}" if arm.overrides else ""))
            continue
        lr = arm.lr(tuned, args.under_factor)
        for seed in args.seeds_of[arm.name]:
            tag = arm.run_tag(lr, seed, args.alphas)
            cmd = train_command(args.testbed, assets, args.settings, lr, seed, arm.hydra_overrides(args.alphas))
            state = "cached" if run_is_cached(work / tag, cmd) else "to run"
            if state == "to run" and earlier and earlier.curve(arm, lr, seed, args.alphas):
                state = f"from {earlier.path}"
            print(f"[bench]   {arm.name} seed {seed}: lr {lr:g}, {work / tag} ({state})")


def assets_record(assets) -> dict:
    """What the JSON records of the assets (and what ``--curves-from`` checks)."""
    return {k: getattr(assets, k) for k in ("task", "seed", "quick", "teacher_accuracy", "student_accuracy", "num_rows")}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    testbed, settings = args.testbed, args.settings
    assets_dir = Path(args.assets).resolve()
    assets = testbed.load_assets(assets_dir)
    if args.task and args.task != assets.task:
        raise SystemExit(f"--task {args.task} but the assets at {assets_dir} are for {assets.task!r}")
    work = work_folder(Path(args.work).resolve(), testbed, assets.task, settings)
    seeds = args.seeds
    print(f"[bench] {testbed.name} task {assets.task} (test {assets.num_rows['test']} prompts, student "
          f"{assets.student_accuracy:.3f}, teacher {assets.teacher_accuracy:.3f}); seeds {seeds}; {args.steps} steps × "
          f"{args.batch} prompts; arms {[a.name for a in args.arm_set]}; work {work}", flush=True)
    try:
        earlier = (EarlierCurves.load(args.curves_from, testbed.name, assets.task, assets_record(assets), settings)
                   if args.curves_from else None)
    except ValueError as e:
        raise SystemExit(f"[bench] {e}") from None
    if args.dry_run:
        dry_run(args, assets, work, earlier)
        return
    t0 = time.time()
    print("[bench] loading the scorers (teacher's greedy answers on test and val)", flush=True)
    runner = Runner(testbed, assets, settings, work,
                    {"test": testbed.scorer(assets, assets.test_file), "val": testbed.scorer(assets, assets.val_file)}, earlier)

    # 1. the tuned lr: sweep on the validation split (seed = first seed)
    sweep = None
    if args.tuned_lr is None:
        sweep = sweep_lr(runner, args.sweep_lrs, seeds[0], args.sweep_extend, args.sweep_until_unstable, args.stable_tol)
        tuned = sweep.tuned
        how = sweep.how(seeds[0], settings, assets.num_rows["val"], args.sweep_extend, args.sweep_until_unstable, args.stable_tol)
    else:
        tuned, how = args.tuned_lr, "given on the command line (--tuned-lr)"
    lrs = arm_lrs(args, tuned)
    print(f"[bench] tuned lr {lrs['tuned']:g}, under-stepped lr {lrs['under']:g}; "
          f"arm lrs {', '.join(f'{k} {v:g}' for k, v in lrs.items())}", flush=True)

    # 2. the arms
    curves: dict[str, dict[int, Curve]] = {}
    for seed in seeds:
        for arm in args.arm_set:
            if seed in args.seeds_of[arm.name]:
                curves.setdefault(arm.name, {})[seed] = runner.run_arm(arm, lrs[arm.rate], seed, args.alphas)
    if args.runs_only:
        print(f"[bench] --runs-only: {len(curves)} arm(s) trained and scored under {work}", flush=True)
        return

    # 3. the figures, the tables and the files
    curves = {a: curves[a] for a in table_order(curves, lrs)}
    arms, top = summarize(curves)
    step_ratio, stepeq_ratio, headline = best_vanilla_headline(curves)
    top["effopd_vs_best_vanilla_step_ratio"] = step_ratio
    top["effopd_vs_best_vanilla_stepeq_ratio"] = stepeq_ratio
    verdicts = {f"{k:g}": v for k, v in sweep.verdicts.items()} if sweep else {}
    noise = gain_noise(curves, assets.num_rows["test"])
    text = tables.table(arms, top, lrs) + "\n" + tables.noise_lines(noise)
    headline_text = tables.headline_table(headline)
    sweep_text = tables.sweep_table(verdicts)
    searches = tables.search_table(curves)
    print("\n" + "\n\n".join(t for t in (text, headline_text, sweep_text, searches) if t) + "\n", flush=True)
    result = {
        "testbed": testbed.name, "task": assets.task,
        "assets": assets_record(assets),
        "seeds": seeds, "arm_seeds": args.arm_seeds, "steps": args.steps, "batch_prompts": args.batch, "overrides": args.override,
        "arm_overrides": args.arm_override,
        "curves_from": {"json": earlier.path, "arms": runner.taken_from_earlier} if runner.taken_from_earlier else None,
        "effopd_alphas": args.alphas or "default (2, 4, 6, 8, 10)", "effopd_val_size": args.val_size,
        "effopd_defaults": effopd_defaults(),
        "lr": lrs, "under_factor": args.under_factor, "tuned_lr_how": how,
        "sweep_val_acc": {lr: v["val_acc_final"] for lr, v in verdicts.items()},
        "sweep_stability": verdicts,
        "measure": "test split, greedy exact match and teacher log-prob, scored from every step's checkpoint; "
                   "wall = sum of verl timing_s/step minus checkpoint saving (includes EffOPD search)",
        "gain_definition": "vanilla gain = vanilla best test acc - initial; steps_to_f = first scored step with acc >= initial + f*gain; "
                           "effopd_vs_best_vanilla_*: target = initial + 0.9 * the best gain of any vanilla arm, fewest steps "
                           "(step-equivalents) of any vanilla arm / of any searching EffOPD arm, per seed",
        **top,
        "best_vanilla_headline": headline,
        "vanilla_gain_noise": noise,
        "arms": arms,
        "curves": {a: {str(s): c.to_json() for s, c in by.items()} for a, by in curves.items()},
        "table": text, "headline_table": headline_text, "sweep_table": sweep_text, "search_table": searches,
        "bench_seconds": time.time() - t0,
    }
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"[bench] wrote {args.json}")
    if args.md:
        os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
        Path(args.md).write_text(tables.markdown(result, shlex.join(["python", "scripts/bench_speedup.py", *argv])))
        print(f"[bench] wrote {args.md}")
    if args.png:
        tables.plot(curves, lrs, args.png, testbed.name)
        print(f"[bench] wrote {args.png}")


if __name__ == "__main__":
    main()
