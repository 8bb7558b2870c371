#!/usr/bin/env python
"""Build the toy task assets (tokenizer, parquet splits, reward, tiny Qwen3 teacher and student) offline.

    python scripts/build_toy_assets.py OUT_DIR [--task add|reverse] [--seed N] [--quick] [--student-target P]
    python scripts/build_toy_assets.py --list-tasks

Deterministic for a given (task, seed); a folder holding a complete build of the same
(task, seed, quick) is reused. Prints the teacher's and the student's greedy exact match on the
test split. See effopd_verl/toy/build.py.
"""

from __future__ import annotations

import argparse
import sys

from effopd_verl.toy.tasks import task_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", help="folder to build into (created; reused when complete)")
    parser.add_argument("--task", default="add", choices=task_names(), help="task variant (default: add)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data splits and of training (default: 0)")
    parser.add_argument("--quick", action="store_true", help="small data and a short run (tests; seconds)")
    parser.add_argument("--student-target", type=float, default=None,
                        help="the student is the latest checkpoint at or below this accuracy (default 0.2; quick 0.1)")
    parser.add_argument("--list-tasks", action="store_true", help="print the task variant names, one per line")
    args = parser.parse_args(argv)

    if args.list_tasks:
        print("\n".join(task_names()))
        return 0
    if not args.out_dir:
        parser.error("OUT_DIR is required (or --list-tasks)")

    from effopd_verl.toy.build import build_assets

    assets = build_assets(
        args.out_dir, task=args.task, seed=args.seed, quick=args.quick, progress=lambda m: print(m, flush=True),
        student_target=args.student_target,
    )
    state = "reused" if assets.reused else f"built in {assets.build_seconds:.1f}s"
    print(f"{assets.out_dir}: task {assets.task}, seed {assets.seed}{', quick' if assets.quick else ''} ({state})")
    print(f"teacher test accuracy {assets.teacher_accuracy:.3f} (step {assets.teacher_step})")
    print(f"student test accuracy {assets.student_accuracy:.3f} (step {assets.student_step})")
    print(
        f"rows: {assets.num_rows}; max prompt {assets.max_prompt_length} tokens, "
        f"max response {assets.max_response_length} tokens"
    )
    print(f"reward: path={assets.reward_path} name={assets.reward_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
