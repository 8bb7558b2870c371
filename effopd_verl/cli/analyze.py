"""``effopd-analyze BASE CKPT [CKPT …]``: where and how training moved the weights (update geometry).

BASE and every CKPT are HF model folders or ``.safetensors`` files (verl checkpoints: merge them to
HF first). For each checkpoint's update ΔW = W_ckpt − W_base, per 2-D weight matrix: spectral norm,
spectral/Frobenius ratio, effective rank, top-1% subspace norm ratio, bf16 update sparsity, and the
top-k subspace alignment with the final update (``--final``, default the last CKPT); plus the same
aggregated per module type, per layer, and over attention + MLP matrices (the paper's Table 1).
Definitions: :mod:`effopd_verl.core.diagnostics`.

Outputs: a summary table on stdout; ``--json PATH`` (default ``DIR/geometry.json`` with
``--out-dir DIR``); with ``--out-dir``, ``update_norm_by_layer.png`` and ``alignment_with_final.png``
(against training progress = step / final step, the step read from names such as
``global_step_40``); with ``--rescale-out DIR``, for every CKPT other than the final, the paper's
module-wise norm-rescaled model W_base + (‖ΔW_final‖_F / ‖ΔW_ckpt‖_F)·ΔW_ckpt per parameter, written
as an HF folder (the base's config and tokenizer copied) for evaluation; with ``--paper-table PATH``,
Markdown tables of the attention + MLP means next to the paper's Table 1
(:mod:`effopd_verl.cli.paper_table`).

    effopd-analyze base/ ckpts/global_step_10 ckpts/global_step_50 ckpts/global_step_100 \\
        --out-dir analysis/ --rescale-out analysis/rescaled --paper-table analysis/table1.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from tqdm import tqdm

from effopd_verl.cli.geometry_plots import plot_alignment_with_final, plot_update_norm_by_layer
from effopd_verl.cli.paper_table import paper_tables
from effopd_verl.core.diagnostics import (
    DEFAULT_ALIGNMENT_RANK,
    CheckpointGeometry,
    UpdateAggregates,
    aggregate,
    analyze_updates,
    check_same_parameters,
    classify_parameter,
    common_matrix_names,
    default_device,
    rescaled_weights,
)
from effopd_verl.core.weight_files import (
    SafetensorsWeights,
    WeightsNotFound,
    copy_model_files,
    open_weights,
    tensor_shapes,
    write_safetensors_folder,
)

JSON_NAME = "geometry.json"
NORM_PLOT = "update_norm_by_layer.png"
ALIGNMENT_PLOT = "alignment_with_final.png"
_STEP = re.compile(r"(?:global_step|step|checkpoint|ckpt|iter)[-_]?(\d+)", re.IGNORECASE)


@dataclasses.dataclass
class Checkpoint:
    """One analyzed checkpoint: where it is, its training step (if its path names one), its weights."""

    path: str
    weights: SafetensorsWeights
    step: int | None
    is_final: bool = False


def checkpoint_step(path: str) -> int | None:
    """The training step a checkpoint path names (``global_step_40``, ``checkpoint-40``, …), else None.

    >>> checkpoint_step("runs/opd/global_step_40/actor/huggingface"), checkpoint_step("Qwen3-1.7B")
    (40, None)
    """
    matches = _STEP.findall(path)
    return int(matches[-1]) if matches else None


def training_progress(checkpoints: list[Checkpoint]) -> tuple[list[float], str]:
    """x values for the alignment plot: step / final step when every path names a step, else the order."""
    final_step = next(c.step for c in checkpoints if c.is_final)
    if final_step and all(c.step is not None for c in checkpoints):
        return [c.step / final_step for c in checkpoints], "training progress (step / final step)"
    return [float(i + 1) for i in range(len(checkpoints))], "checkpoint (in the order given)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="effopd-analyze", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", metavar="BASE", help="the weights before training: HF model folder or .safetensors file")
    parser.add_argument("checkpoints", metavar="CKPT", nargs="+", help="trained weights, in training order")
    parser.add_argument("--final", metavar="FINAL", help="the final weights to align with (default: the last CKPT)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the metrics as JSON here")
    parser.add_argument("--paper-table", metavar="PATH", type=Path,
                        help="write Markdown tables of the means next to the paper's Table 1 here")
    parser.add_argument("--out-dir", metavar="DIR", type=Path, help="write the PNGs (and geometry.json) here")
    parser.add_argument("--label", default="toy OPD", help="the heading of our columns in --paper-table (e.g. 'SmolLM2 OPD')")
    parser.add_argument("--rescale-out", metavar="DIR", type=Path,
                        help="write each non-final CKPT's update rescaled per module to the final norm here")
    parser.add_argument("--alignment-rank", metavar="K", type=int, default=DEFAULT_ALIGNMENT_RANK,
                        help=f"top-K left singular subspace compared with the final's (default {DEFAULT_ALIGNMENT_RANK})")
    parser.add_argument("--device", help="torch device for the SVDs (default: cuda when present, else cpu)")
    return parser


def open_argument(parser: argparse.ArgumentParser, argument: str, path: str) -> SafetensorsWeights:
    try:
        return open_weights(path)
    except WeightsNotFound as error:
        parser.error(f"{argument}: {error}; give an HF model folder or a .safetensors file")


def open_checkpoints(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Checkpoint]:
    """The CKPTs in order, then FINAL unless it is one of them; exactly one is marked final."""
    checkpoints = [Checkpoint(p, open_argument(parser, f"CKPT {p}", p), checkpoint_step(p)) for p in args.checkpoints]
    final_path = args.final or args.checkpoints[-1]
    same = [c for c in checkpoints if Path(c.path).resolve() == Path(final_path).resolve()]
    if same:
        same[-1].is_final = True
    else:
        weights = open_argument(parser, f"--final {final_path}", final_path)
        checkpoints.append(Checkpoint(final_path, weights, checkpoint_step(final_path), is_final=True))
    return checkpoints


def argument_name(checkpoint: Checkpoint, args: argparse.Namespace) -> str:
    in_ckpts = checkpoint.path in args.checkpoints
    return f"{'CKPT' if in_ckpts else '--final'} {checkpoint.path}"


def finite_or_none(value):
    """JSON has no NaN: undefined metrics (of zero updates) become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def checkpoint_json(
    checkpoint: Checkpoint, progress: float | None, geometry: CheckpointGeometry,
    aggregates: UpdateAggregates, shapes: Mapping[str, tuple[int, ...]],
) -> dict:
    parameters = {}
    for name, stats in geometry.matrices.items():
        location = classify_parameter(name)
        parameters[name] = {
            "module_type": location.module_type,
            "layer": location.layer,
            "shape": list(shapes[name]),
            **dataclasses.asdict(stats),
            "alignment_with_final": geometry.alignment_with_final[name],
        }
    return finite_or_none({
        "path": checkpoint.path,
        "step": checkpoint.step,
        "progress": progress,
        "is_final": checkpoint.is_final,
        "parameters": parameters,
        "aggregates": dataclasses.asdict(aggregates),
    })


def print_summary(rows: list[tuple[Checkpoint, UpdateAggregates]]) -> None:
    """One line per checkpoint: the attention + MLP means (all matrices when there are none)."""
    print(f"{'checkpoint':<40} {'step':>6} {'‖ΔW‖_F':>9} {'σ1/‖ΔW‖_F':>10} {'eff.rank':>9} "
          f"{'top-1%':>7} {'bf16 sparsity':>13} {'align final':>11}")
    for checkpoint, aggregates in rows:
        summary = aggregates.attention_and_mlp or aggregates.all_matrices
        name = checkpoint.path if len(checkpoint.path) <= 40 else "…" + checkpoint.path[-39:]
        step = "" if checkpoint.step is None else str(checkpoint.step)
        print(f"{name:<40} {step:>6} {summary.update_norm:>9.4g} {summary.spectral_frobenius_ratio:>10.3f} "
              f"{summary.effective_rank:>9.1f} {summary.top1pct_norm_ratio:>7.3f} {summary.bf16_sparsity:>13.3f} "
              f"{summary.alignment_with_final:>11.3f}")


def rescale_folder_names(checkpoints: list[Checkpoint]) -> list[str]:
    """``step_N`` per checkpoint when the steps are known and distinct, else ``checkpoint_I`` (1-based)."""
    steps = [c.step for c in checkpoints]
    if None not in steps and len(set(steps)) == len(steps):
        return [f"step_{step}" for step in steps]
    return [f"checkpoint_{i + 1}" for i in range(len(checkpoints))]


def write_rescaled(
    base_path: str, base: SafetensorsWeights, early: Checkpoint, final: Checkpoint, out_dir: Path
) -> Path:
    """The paper's module-wise norm-rescaled model of ``early`` as an HF folder, plus ``rescaling.json``."""
    scales: dict[str, float] = {}
    write_safetensors_folder(out_dir, rescaled_weights(base, early.weights, final.weights, scales))
    copy_model_files(base_path, out_dir)
    record = {"base": base_path, "early": early.path, "final": final.path,
              "definition": "W_base + (‖ΔW_final‖_F / ‖ΔW_early‖_F)·ΔW_early per parameter",
              "scales": scales}
    (out_dir / "rescaling.json").write_text(json.dumps(finite_or_none(record), indent=2))
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.alignment_rank < 1:
        parser.error(f"--alignment-rank: must be at least 1, got {args.alignment_rank}")
    if args.rescale_out and args.rescale_out.exists() and any(args.rescale_out.iterdir()):
        parser.error(f"--rescale-out: {args.rescale_out} is not empty; give a new or empty folder")
    repeated = sorted({p for p in args.checkpoints if args.checkpoints.count(p) > 1})
    if repeated:
        parser.error(f"CKPT: {repeated[0]} is given more than once; give each checkpoint once")
    base = open_argument(parser, "BASE", args.base)
    checkpoints = open_checkpoints(parser, args)
    labelled = {argument_name(c, args): c.weights for c in checkpoints}
    try:
        names = common_matrix_names(base, labelled)
        if args.rescale_out:
            check_same_parameters(base, labelled)
    except ValueError as error:
        parser.error(str(error))
    device = torch.device(args.device) if args.device else default_device()

    final = next(c for c in checkpoints if c.is_final)
    geometry = analyze_updates(
        base, {c.path: c.weights for c in checkpoints}, final.weights, names=names,
        alignment_rank=args.alignment_rank, device=device,
        progress=lambda items: tqdm(items, desc="matrices", unit="matrix", file=sys.stderr),
    )
    shapes = tensor_shapes(base)
    aggregates = [aggregate(geometry[c.path].matrices, shapes, geometry[c.path].alignment_with_final) for c in checkpoints]
    progress, progress_label = training_progress(checkpoints)
    print_summary(list(zip(checkpoints, aggregates)))

    has_progress = progress_label.startswith("training progress")
    report = {
        "base": args.base,
        "final": final.path,
        "alignment_rank": args.alignment_rank,
        "device": str(device),
        "checkpoints": [
            checkpoint_json(c, x if has_progress else None, geometry[c.path], a, shapes)
            for c, x, a in zip(checkpoints, progress, aggregates)
        ],
    }
    json_path = args.json or (args.out_dir / JSON_NAME if args.out_dir else None)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=1))
        print(f"wrote {json_path}")
    if args.paper_table:
        args.paper_table.parent.mkdir(parents=True, exist_ok=True)
        args.paper_table.write_text(paper_tables(report, args.label))
        print(f"wrote {args.paper_table}")
    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        labels = [c.path if c.step is None else f"step {c.step}" for c in checkpoints]
        print(f"wrote {plot_update_norm_by_layer(labels, aggregates, args.out_dir / NORM_PLOT)}")
        print(f"wrote {plot_alignment_with_final(progress, progress_label, aggregates, args.alignment_rank, args.out_dir / ALIGNMENT_PLOT)}")
    if args.rescale_out:
        early = [c for c in checkpoints if not c.is_final]
        for checkpoint, folder in zip(early, rescale_folder_names(early)):
            written = write_rescaled(args.base, base, checkpoint, final, args.rescale_out / folder)
            print(f"wrote {written} (rescaled {checkpoint.path} to the final update's norms)")
