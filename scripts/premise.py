#!/usr/bin/env python
"""Does vanilla OPD's update lock into its final direction early (the paper's premise)? Measured on one
finished vanilla run of ``scripts/bench_speedup.py --keep-checkpoints`` (definitions:
``effopd_verl.bench.premise``).

    python scripts/premise.py --testbed smollm2 --assets runs/lm_add1 \\
        --run runs/bench_lm/smollm2_add1_s24_b16_03e6657d/vanilla_lr3e-05_seed0 \\
        --out docs/results/premise_smollm2 --json docs/results/premise_smollm2.json

Writes OUT/{README.md, table1.md, geometry.json, premise.png, update_norm_by_layer.png,
alignment_with_final.png} and the JSON (keys ``alignment_10pct_final``, ``rescaled_10pct_recovered_share``,
``consecutive_cosines``, …); HF folders of the analyzed and rescaled checkpoints go to --scratch.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from effopd_verl.bench import premise as pm
from effopd_verl.bench.checkpoint_scores import resolve_testbed
from effopd_verl.cli import analyze
from effopd_verl.core.weight_files import copy_model_files, open_weights, write_safetensors_folder


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--testbed", default="toy", help="toy, smollm2, or module:attribute (effopd_verl.bench)")
    p.add_argument("--assets", required=True, help="the testbed's assets (the run's student and test split)")
    p.add_argument("--run", required=True, type=Path, help="a finished vanilla run folder with checkpoints/global_step_N")
    p.add_argument("--early", type=float, default=0.1, help="the early checkpoint, as a fraction of the run")
    p.add_argument("--out", required=True, type=Path, help="results folder (Markdown, tables, plots)")
    p.add_argument("--json", type=Path, default=None, help="the headline numbers (default OUT/premise.json)")
    p.add_argument("--scratch", type=Path, default=None, help="HF folders written for effopd-analyze (default RUN/premise)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.time()
    testbed = resolve_testbed(args.testbed)
    assets = testbed.load_assets(args.assets)
    base_dir = Path(assets.student_dir)
    scratch = args.scratch or args.run / "premise"
    steps = pm.checkpoint_steps(args.run)
    last = steps[-1]
    early, mid = max(1, round(args.early * last)), round(0.5 * last)
    if early not in steps or mid not in steps:
        raise SystemExit(f"steps {early} and {mid} are needed; the run saved {steps}")
    base = {n: t.clone() for n, t in open_weights(base_dir).items()}

    traj, states = pm.trajectory(args.run, base, steps, keep=(early, mid, last))
    folders = [pm.write_checkpoint_folder(states[s], s, base_dir, scratch / "ckpts") for s in (early, mid, last)]
    args.out.mkdir(parents=True, exist_ok=True)
    analyze.main([str(base_dir), *map(str, folders), "--out-dir", str(args.out), "--rescale-out", str(scratch / "rescaled"),
                  "--paper-table", str(args.out / "table1.md"), "--label", f"{testbed.name} OPD", "--json", str(args.out / "geometry.json")])
    geometry = json.loads((args.out / "geometry.json").read_text())
    topk = {c["step"]: c["aggregates"]["attention_and_mlp"]["alignment_with_final"] for c in geometry["checkpoints"]}

    for s in (early, mid):
        folder = scratch / "global_rescaled" / f"step_{s}"
        if not (folder / "config.json").exists():
            write_safetensors_folder(folder, pm.globally_rescaled(base, states[s], states[last]))
            copy_model_files(base_dir, folder)
    scorer = testbed.scorer(assets, assets.test_file)
    scored = {"student (step 0)": pm.score_state(scorer, None)}
    for s in (early, mid, last):
        scored[f"step {s}"] = pm.score_state(scorer, states[s])
    for s in (early, mid):
        scored[f"step {s} rescaled per module"] = pm.score_state(scorer, open_weights(scratch / "rescaled" / f"step_{s}"))
        scored[f"step {s} rescaled globally"] = pm.score_state(scorer, open_weights(scratch / "global_rescaled" / f"step_{s}"))
    for k, v in scored.items():
        print(f"[premise] {k}: exact match {v['exact_match']:.3f}, teacher log-prob {v['teacher_logprob']:.3f}")

    final_acc = scored[f"step {last}"]["exact_match"]
    acc0 = scored["student (step 0)"]["exact_match"]

    def share(key: str) -> float | None:
        return scored[key]["exact_match"] / final_acc if final_acc > 0 else None

    def gain_share(key: str) -> float | None:
        return (scored[key]["exact_match"] - acc0) / (final_acc - acc0) if final_acc != acc0 else None

    result = {
        "testbed": testbed.name, "task": assets.task, "run": str(args.run), "steps": last,
        "early_step": early, "mid_step": mid,
        "alignment_10pct_final": topk.get(early),
        "alignment_10pct_final_cosine": traj["alignment_cosine"][str(early)],
        "rescaled_10pct_recovered_share": share(f"step {early} rescaled per module"),
        "rescaled_10pct_recovered_gain_share": gain_share(f"step {early} rescaled per module"),
        "rescaled_10pct_global_recovered_share": share(f"step {early} rescaled globally"),
        "consecutive_cosines": [w["cosine"] for w in traj["window_cosines"]],
        "consecutive_windows": traj["window_cosines"],
        "step_cosines": traj["step_cosines"],
        "alignment_cosine_by_step": traj["alignment_cosine"],
        "topk_alignment_by_step": {str(k): v for k, v in topk.items()},
        "final_update_norm": traj["final_update_norm"],
        "scores": scored,
        "seconds": round(time.time() - start, 1),
    }
    out_json = args.json or args.out / "premise.json"
    out_json.write_text(json.dumps(result, indent=1))
    pm.plot(result, args.out / "premise.png")
    print(json.dumps({k: v for k, v in result.items() if k not in ("consecutive_windows", "scores", "step_cosines",
                                                                    "alignment_cosine_by_step")}, indent=1))


if __name__ == "__main__":
    main()
