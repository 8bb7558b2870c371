"""``effopd-report RUN [RUN …]``: plots of any run's logged metrics, EffOPD triggers marked.

A RUN is a JSONL file written by verl's ``file`` logger (``trainer.logger=[console,file]``: one line
``{"step": t, "data": {metric: value}}`` per step) or a folder searched for such files. For each
metric (by default the validation metrics ``val-core/*`` and EffOPD's best search score) it draws
the value against the global step and against wall time (the sum of verl's ``timing_s/step``),
with a vertical line at every EffOPD search labelled with the accepted α.

    effopd-report runs/vanilla.jsonl runs/effopd.jsonl --out runs/report.png
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

STEP_TIME = "timing_s/step"
ACCEPTED_ALPHA = "effopd/accepted_alpha"
DEFAULT_PREFIXES = ("val-core/", "effopd/score_best")


@dataclass
class RunLog:
    """One run's metrics by step."""

    name: str
    steps: list[int] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> "RunLog":
        merged: dict[int, dict[str, float]] = {}
        with open(path) as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    step, data = int(record["step"]), record["data"]
                except (ValueError, KeyError, TypeError) as err:
                    raise ValueError(f"{path}:{line_no} is not a verl file-logger line ({err})") from None
                merged.setdefault(step, {}).update({k: v for k, v in data.items() if isinstance(v, (int, float))})
        steps = sorted(merged)
        return cls(name=path.stem, steps=steps, rows=[merged[s] for s in steps])

    def series(self, metric: str) -> tuple[list[int], list[float], list[float]]:
        """(steps, wall seconds at the end of each step, values) where ``metric`` was logged."""
        wall, total = [], 0.0
        for row in self.rows:
            total += row.get(STEP_TIME, 0.0)
            wall.append(total)
        picked = [(s, w, r[metric]) for s, w, r in zip(self.steps, wall, self.rows) if metric in r]
        return [p[0] for p in picked], [p[1] for p in picked], [p[2] for p in picked]

    def metrics(self) -> set[str]:
        return {k for row in self.rows for k in row}


def find_logs(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(p.rglob("*.jsonl")))
        else:
            raise SystemExit(f"effopd-report: {p} does not exist; give verl file-logger .jsonl files or folders holding them")
    if not found:
        raise SystemExit(f"effopd-report: no .jsonl logs under {paths}; run with trainer.logger=[console,file]")
    return found


def plot(runs: list[RunLog], metrics: list[str], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 2, figsize=(12, 3.2 * len(metrics)), squeeze=False)
    for row, metric in enumerate(metrics):
        for col, axis_name in enumerate(("global step", "wall time (s)")):
            ax = axes[row][col]
            for run in runs:
                steps, wall, values = run.series(metric)
                if not steps:
                    continue
                xs = steps if col == 0 else wall
                (line,) = ax.plot(xs, values, marker=".", label=run.name)
                t_steps, t_wall, alphas = run.series(ACCEPTED_ALPHA)
                for t, w, a in zip(t_steps, t_wall, alphas):
                    x = t if col == 0 else w
                    ax.axvline(x, color=line.get_color(), alpha=0.25, linestyle="--")
                    if row == 0:
                        ax.annotate(f"α={a:g}", (x, 1), xycoords=("data", "axes fraction"), fontsize=7,
                                    rotation=90, va="top", color=line.get_color())
            ax.set_xlabel(axis_name)
            ax.set_ylabel(metric, fontsize=8)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle("EffOPD report (dashed: searches, with the accepted α)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="effopd-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="verl file-logger .jsonl files, or folders holding them")
    parser.add_argument("--metric", action="append", help="metric to plot (repeatable); default: val-core/* and effopd/score_best")
    parser.add_argument("--out", default="effopd_report.png", help="PNG to write")
    args = parser.parse_args(argv)

    runs = [RunLog.read(p) for p in find_logs(args.runs)]
    available = set().union(*(r.metrics() for r in runs))
    metrics = args.metric or sorted(m for m in available if m.startswith(DEFAULT_PREFIXES))
    unknown = [m for m in metrics if m not in available]
    if unknown or not metrics:
        raise SystemExit(f"effopd-report: metric(s) {unknown or 'none'} not logged; logged are e.g. {sorted(available)[:20]}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    plot(runs, metrics, args.out)
    for run in runs:
        steps, _, alphas = run.series(ACCEPTED_ALPHA)
        searches = ", ".join(f"t={s}: α={a:g}" for s, a in zip(steps, alphas)) or "none"
        print(f"{run.name}: {len(run.steps)} steps; searches {searches}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
