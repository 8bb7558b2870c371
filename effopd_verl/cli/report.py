"""``effopd-report RUN [RUN …]``: plots of any run's logged metrics, EffOPD triggers marked.

A RUN is a JSONL file written by verl's ``file`` logger (``trainer.logger=[console,file]``: one line
``{"step": t, "data": {metric: value}}`` per step), a saved console output of verl's ``console``
logger (``step:t - metric:value - …`` lines, any other file name), or a run directory: the
file-logger logs under it, else its ``*.log`` console outputs. For each
metric (by default the validation metrics ``val-core/*`` and EffOPD's best search score) it draws
the value against the global step and against wall time (the sum of verl's ``timing_s/step``),
with a vertical line at every EffOPD search labelled with the accepted α.

``--metric`` takes exact names or shell-style patterns (``'val-core/*/mean@1'``); ``--hline
teacher=0.99`` draws a labelled reference line on the validation panels (``PATTERN:LABEL=VALUE`` on
the panels of other metrics); ``--table PATH`` (``.md`` or ``.json``) writes the plotted metrics per
logged step with the wall time, one table per run. A run is named after its file, or after its
folder where the file's name (verl's ``metrics.jsonl``, say) does not tell runs apart.

    effopd-report runs/vanilla.jsonl runs/effopd.jsonl --out runs/report.png
    effopd-report runs/opd/ --out runs/opd/report.png                 # a run directory
    effopd-report train.log --metric 'val-core/*'                     # console output only
    effopd-report runs/opd/metrics.jsonl --metric 'val-core/*/mean@1' --metric actor/distillation/loss \
        --hline teacher=0.99 --table runs/opd/curve.md --out runs/opd/curve.png
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

STEP_TIME = "timing_s/step"
ACCEPTED_ALPHA = "effopd/accepted_alpha"
DEFAULT_PREFIXES = ("val-core/", "effopd/score_best")
DEFAULT_HLINE_PATTERN = "val-core/*"


@dataclass
class RunLog:
    """One run's metrics by step."""

    name: str
    steps: list[int] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> "RunLog":
        """A verl file-logger ``.jsonl`` (``{"step": N, "data": {...}}`` per line), or any other file as
        console output: the lines verl's console logger prints, ``step:N - key:value - …``, found anywhere
        in a line (Ray's ``(TaskRunner pid=…)`` prefixes and colour codes are skipped)."""
        merged: dict[int, dict[str, float]] = {}
        records = _file_logger_records(path) if path.suffix == ".jsonl" else _console_records(path)
        for step, data in records:
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


_CONSOLE_STEP = re.compile(r"step:(\d+) - (.*)$")
_NUMPY_SCALAR = re.compile(r"np\.\w+\((.*)\)")  # pprint of numpy scalars: np.float64(0.25)


def _file_logger_records(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                yield int(record["step"]), record["data"]
            except (ValueError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{line_no} is not a verl file-logger line ({err})") from None


def _console_records(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, errors="replace") as f:
        for line in f:
            match = _CONSOLE_STEP.search(line.rstrip())
            if not match:
                continue
            data = {}
            for item in match.group(2).split(" - "):
                key, _, value = item.rpartition(":")
                numpy_scalar = _NUMPY_SCALAR.fullmatch(value)
                try:
                    data[key] = float(numpy_scalar.group(1) if numpy_scalar else value)
                except ValueError:
                    continue
            yield int(match.group(1)), data


def is_file_logger_log(path: Path) -> bool:
    """Whether ``path`` holds verl file-logger lines (its first line does); rollout dumps and other
    ``.jsonl`` files do not."""
    with open(path) as f:
        first = next((line for line in f if line.strip()), "")
    try:
        record = json.loads(first)
        return isinstance(record, dict) and "step" in record and isinstance(record.get("data"), dict)
    except ValueError:
        return False


def find_logs(paths: list[str]) -> list[Path]:
    """The logs to read: files as given; in a folder (a run directory), the verl file-logger ``.jsonl``
    files under it, or where there are none, its ``*.log`` files as console output."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif p.is_dir():
            logs = [f for f in sorted(p.rglob("*.jsonl")) if is_file_logger_log(f)]
            found.extend(logs or sorted(p.rglob("*.log")))
        else:
            raise SystemExit(f"effopd-report: {p} does not exist; give verl file-logger .jsonl files, console logs, or folders holding them")
    if not found:
        raise SystemExit(f"effopd-report: no logs under {paths}; run with trainer.logger=[console,file], or save the console output to a .log file")
    return found


def read_runs(paths: list[Path]) -> list[RunLog]:
    """Each log as a run, named after its file, or ``folder/file`` where file names repeat."""
    runs = [RunLog.read(p) for p in paths]
    stems = [p.stem for p in paths]
    for run, path in zip(runs, paths):
        if stems.count(path.stem) > 1 or path.stem == "metrics":
            run.name = path.parent.name or path.stem
    names = [r.name for r in runs]
    for run, path in zip(runs, paths):
        if names.count(run.name) > 1:
            run.name = str(path)
    return runs


def select_metrics(patterns: list[str], available: set[str]) -> tuple[list[str], list[str]]:
    """(the logged metrics the names or patterns pick, in the order given; the patterns that pick none)."""
    picked: list[str] = []
    unmatched: list[str] = []
    for pattern in patterns:
        hits = [pattern] if pattern in available else sorted(fnmatch.filter(available, pattern))
        if not hits:
            unmatched.append(pattern)
        picked.extend(m for m in hits if m not in picked)
    return picked, unmatched


@dataclass
class HLine:
    """A labelled horizontal reference line on the panels of the metrics matching ``pattern``."""

    label: str
    value: float
    pattern: str = DEFAULT_HLINE_PATTERN

    @classmethod
    def parse(cls, text: str) -> "HLine":
        pattern, _, rest = text.rpartition(":") if ":" in text.split("=", 1)[0] else ("", "", text)
        label, sep, value = rest.partition("=")
        try:
            if not sep or not label:
                raise ValueError
            return cls(label=label, value=float(value), pattern=pattern or DEFAULT_HLINE_PATTERN)
        except ValueError:
            raise SystemExit(f"effopd-report: --hline {text!r}: expected LABEL=VALUE or METRIC_PATTERN:LABEL=VALUE") from None

    def applies_to(self, metric: str) -> bool:
        return metric == self.pattern or fnmatch.fnmatch(metric, self.pattern)


def table_rows(run: RunLog, metrics: list[str]) -> list[dict[str, float | int | None]]:
    """One row per step where any of ``metrics`` was logged: step, wall seconds, each metric (None: not logged)."""
    wall, total = [], 0.0
    for row in run.rows:
        total += row.get(STEP_TIME, 0.0)
        wall.append(total)
    return [
        {"step": step, "wall_s": round(w, 3), **{m: row.get(m) for m in metrics}}
        for step, w, row in zip(run.steps, wall, run.rows)
        if any(m in row for m in metrics)
    ]


def write_table(runs: list[RunLog], metrics: list[str], path: str) -> None:
    tables = {run.name: table_rows(run, metrics) for run in runs}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".json"):
        with open(path, "w") as f:
            json.dump({"metrics": metrics, "runs": tables}, f, indent=1)
            f.write("\n")
        return

    def cell(v: float | int | None) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines: list[str] = []
    for name, rows in tables.items():
        lines += [f"**{name}**", "", "| step | wall (s) | " + " | ".join(metrics) + " |",
                  "|---|---|" + "---|" * len(metrics)]
        lines += ["| " + " | ".join(cell(r[k]) for k in ("step", "wall_s", *metrics)) + " |" for r in rows]
        lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def plot(runs: list[RunLog], metrics: list[str], out: str, hlines: list[HLine] = (), title: str | None = None) -> None:
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
            for h in hlines:
                if h.applies_to(metric):
                    ax.axhline(h.value, color="grey", linestyle=":", linewidth=1)
                    ax.annotate(f"{h.label} {h.value:g}", (0.01, h.value), xycoords=("axes fraction", "data"),
                                fontsize=7, color="grey", va="bottom")
            ax.set_xlabel(axis_name)
            ax.set_ylabel(metric, fontsize=8)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "EffOPD report (dashed: searches, with the accepted α)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="effopd-report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="verl file-logger .jsonl files, saved console output, or run directories")
    parser.add_argument("--metric", action="append",
                        help="metric name or shell-style pattern to plot (repeatable); default: val-core/* and effopd/score_best")
    parser.add_argument("--out", default="effopd_report.png", help="PNG to write")
    parser.add_argument("--hline", action="append", default=[], metavar="[PATTERN:]LABEL=VALUE",
                        help=f"labelled reference line on the panels of metrics matching PATTERN (default {DEFAULT_HLINE_PATTERN})")
    parser.add_argument("--table", metavar="PATH", help="also write the plotted metrics per logged step (.md or .json)")
    parser.add_argument("--title", help="figure title")
    args = parser.parse_args(argv)

    hlines = [HLine.parse(h) for h in args.hline]
    runs = read_runs(find_logs(args.runs))
    available = set().union(*(r.metrics() for r in runs))
    if args.metric:
        metrics, unknown = select_metrics(args.metric, available)
    else:
        metrics, unknown = sorted(m for m in available if m.startswith(DEFAULT_PREFIXES)), []
    if unknown or not metrics:
        raise SystemExit(f"effopd-report: metric(s) {unknown or 'none'} not logged; logged are e.g. {sorted(available)[:20]}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    plot(runs, metrics, args.out, hlines, args.title)
    if args.table:
        write_table(runs, metrics, args.table)
        print(f"wrote {args.table}")
    for run in runs:
        steps, _, alphas = run.series(ACCEPTED_ALPHA)
        searches = ", ".join(f"t={s}: α={a:g}" for s, a in zip(steps, alphas)) or "none"
        print(f"{run.name}: {len(run.steps)} steps; searches {searches}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
