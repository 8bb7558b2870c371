#!/usr/bin/env python
"""Turn DeepMath-103K or GSM8K into verl's RL parquet: train.parquet, val.parquet, test.parquet.

    python scripts/prepare_data.py --dataset deepmath --source hub --output-dir data/deepmath
    python scripts/prepare_data.py --dataset gsm8k --input ~/gsm8k/main/train-00000-of-00001.parquet \\
        --output-dir data/gsm8k --val-size 50 --test-size 500 --seed 0

Input (``--source local``, the default): a .parquet, .jsonl or .json file, or a folder holding
either a ``datasets`` ``save_to_disk`` copy or a hub snapshot of data files (``--split`` picks
the files of one split, default ``train``). ``--source hub`` downloads the dataset with
``datasets.load_dataset`` (zwhe99/DeepMath-103K; openai/gsm8k, config ``main``) when the hub is
reachable.

Columns used, as the datasets have them:
  DeepMath-103K: question, final_answer, difficulty, topic (r1_solution_1..3 only with --keep-r1-solutions)
  GSM8K:         question, answer (a worked solution ending in "#### <number>")

Each output row is in verl's RL format: ``prompt`` (one user chat message: the question, then the
instruction to put the final answer in \\boxed{}), ``data_source`` (a name verl's default reward,
``verl.utils.reward_score.default_compute_score``, scores with its \\boxed{} math rules),
``ability`` ("math"), ``reward_model`` ({"style": "rule", "ground_truth": answer}) and
``extra_info`` (split, index, the original row and dataset, the question, the answer, and the
DeepMath difficulty/topic).

The rows (at most --max-samples, drawn first) are shuffled once with --seed: the first --test-size
go to test, the next --val-size to val, the rest to train, so a given input, seed and sizes always
give the same files. test.parquet is meant for ``data.val_files`` (verl's periodic validation),
val.parquet for ``effopd.val_files`` (EffOPD's small search set; by default EffOPD samples
``effopd.val_size`` prompts from the training data instead, as the paper does).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

# data_source names that verl 0.9.1's default_compute_score scores by the last \boxed{} of a response:
# lighteval/MATH and its aliases use verl.utils.reward_score.math_reward (MATH answer normalisation,
# 1.0 or 0.0); the numina_* names use prime_math (the same extraction plus sympy equivalence).
# ("openai/gsm8k" is not among them: verl's gsm8k scorer reads "#### <number>", not \boxed{}.)
BOXED_MATH_DATA_SOURCES = (
    "lighteval/MATH",
    "DigitalLearningGmbH/MATH-lighteval",
    "HuggingFaceH4/MATH-500",
    "numina_synthetic_math",
    "numina_olympiads",
    "numina_cn_k12",
    "numina_amc_aime",
    "numina_synthetic_amc",
    "numina_aops_forum",
)
DEFAULT_DATA_SOURCE = "lighteval/MATH"
SPLITS = ("train", "val", "test")
DATA_FILE_SUFFIXES = (".parquet", ".jsonl", ".json")
NOT_DATA_FILES = {"dataset_info.json", "state.json", "dataset_dict.json", "README.md"}


class PrepareDataError(Exception):
    """A problem with the arguments or the input; the message names the argument and the fix."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    hub_id: str
    hub_config: str | None
    columns: tuple[str, ...]
    ground_truth: Callable[[dict], str]
    extra: Callable[[dict, bool], dict]


def deepmath_ground_truth(row: dict) -> str:
    answer = row.get("final_answer")
    if answer is None:
        raise ValueError("final_answer is empty")
    answer = str(answer).strip()
    if len(answer) >= 2 and answer.startswith("$") and answer.endswith("$"):
        answer = answer.strip("$").strip()
    boxed = re.fullmatch(r"\\boxed\{(.*)\}", answer, re.S)
    if boxed:
        answer = boxed.group(1).strip()
    if not answer:
        raise ValueError("final_answer is empty")
    return answer


def gsm8k_ground_truth(row: dict) -> str:
    """The number after GSM8K's final '#### ', without thousands separators: '#### 1,234' -> '1234'."""
    answer = row.get("answer")
    if answer is None or "####" not in str(answer):
        raise ValueError("answer has no '#### <number>' line")
    final = str(answer).rsplit("####", 1)[1].strip()
    final = final.replace(",", "").replace("$", "").strip()
    final = final.rstrip(".") if re.fullmatch(r"-?\d+(\.\d+)?\.", final) else final
    if not re.fullmatch(r"-?\d+(\.\d+)?(/\d+)?", final):
        raise ValueError(f"answer ends in '#### {final}', not a number")
    return final


def deepmath_extra(row: dict, keep_solutions: bool) -> dict:
    extra = {
        "answer": deepmath_ground_truth(row),
        "difficulty": None if row.get("difficulty") is None else float(row["difficulty"]),
        "topic": None if row.get("topic") is None else str(row["topic"]),
    }
    if keep_solutions:
        extra["r1_solutions"] = [str(row[k]) for k in ("r1_solution_1", "r1_solution_2", "r1_solution_3") if row.get(k)]
    return extra


def gsm8k_extra(row: dict, keep_solutions: bool) -> dict:
    return {"answer": gsm8k_ground_truth(row), "solution": str(row["answer"])}


DATASETS = {
    "deepmath": DatasetSpec(
        name="deepmath",
        hub_id="zwhe99/DeepMath-103K",
        hub_config=None,
        columns=("question", "final_answer"),
        ground_truth=deepmath_ground_truth,
        extra=deepmath_extra,
    ),
    "gsm8k": DatasetSpec(
        name="gsm8k",
        hub_id="openai/gsm8k",
        hub_config="main",
        columns=("question", "answer"),
        ground_truth=gsm8k_ground_truth,
        extra=gsm8k_extra,
    ),
}


# ------------------------------------------------------------------------------------------------ reading


def read_local(path_arg: str, split: str, spec: DatasetSpec) -> list[dict]:
    path = Path(path_arg).expanduser()
    if not path.exists():
        raise PrepareDataError(f"--input {path_arg}: no such file or folder")
    if path.is_file():
        return read_data_file(path, arg=f"--input {path_arg}")
    return read_folder(path, split, path_arg, spec)


def read_data_file(path: Path, arg: str) -> list[dict]:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".jsonl":
            frame = pd.read_json(path, lines=True)
        elif suffix == ".json":  # a list of rows, {"<name>": [rows]}, or JSON lines under a .json name
            text = path.read_text(encoding="utf-8")
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                frame = pd.read_json(path, lines=True)
            else:
                if isinstance(data, dict):
                    lists = [v for v in data.values() if isinstance(v, list)]
                    if len(lists) != 1:
                        raise ValueError("a JSON object must hold exactly one list of rows")
                    data = lists[0]
                if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                    raise ValueError("expected a list of objects, one per row")
                frame = pd.DataFrame(data)
        else:
            raise PrepareDataError(f"{arg}: {path.name} is not a .parquet, .jsonl or .json file")
    except PrepareDataError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader error means the same to the user
        raise PrepareDataError(f"{arg}: cannot read {path} ({type(err).__name__}: {err})") from None
    return frame.to_dict(orient="records")


def read_folder(folder: Path, split: str, path_arg: str, spec: DatasetSpec) -> list[dict]:
    """A ``save_to_disk`` copy (Dataset or DatasetDict), or a snapshot of data files.

    In a hub snapshot with one folder per config (GSM8K: main/, socratic/) only the files of the
    config this script uses (``main``) are read.
    """
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        import datasets

        try:
            loaded = datasets.load_from_disk(str(folder))
        except Exception as err:  # noqa: BLE001
            raise PrepareDataError(f"--input {path_arg}: cannot load the saved dataset ({err})") from None
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise PrepareDataError(
                    f"--split {split}: the dataset at --input {path_arg} has the splits {sorted(loaded)}"
                )
            loaded = loaded[split]
        return loaded.to_pandas().to_dict(orient="records")

    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in DATA_FILE_SUFFIXES and p.name not in NOT_DATA_FILES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise PrepareDataError(
            f"--input {path_arg}: the folder holds no .parquet, .jsonl or .json data file "
            "(nor a datasets save_to_disk copy)"
        )
    if spec.hub_config and any(spec.hub_config in p.relative_to(folder).parts[:-1] for p in files):
        files = [p for p in files if spec.hub_config in p.relative_to(folder).parts[:-1]]
    chosen = [p for p in files if _file_split(p.relative_to(folder)) == split]
    if not chosen and all(_file_split(p.relative_to(folder)) is None for p in files):
        chosen = files  # no split names at all: every file is data
    if not chosen:
        found = sorted({s for p in files if (s := _file_split(p.relative_to(folder)))})
        raise PrepareDataError(f"--split {split}: the files under --input {path_arg} are of the splits {found}")
    rows: list[dict] = []
    for path in chosen:
        rows.extend(read_data_file(path, arg=f"--input {path_arg}"))
    return rows


def _file_split(relative: Path) -> str | None:
    """'train' for data/train-00000-of-00001.parquet, main/train.jsonl, train/part-0.parquet …"""
    for part in reversed(relative.parts):
        match = re.match(r"(train|validation|valid|val|test|dev)(?![a-z])", Path(part).stem.lower())
        if match:
            return match.group(1)
    return None


def read_hub(spec: DatasetSpec, split: str) -> list[dict]:
    try:
        import datasets

        loaded = datasets.load_dataset(spec.hub_id, spec.hub_config, split=split)
    except Exception as err:  # noqa: BLE001 - offline, unknown split, no access: all mean "use a local copy"
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrepareDataError(
            f"--source hub: cannot load {spec.hub_id} (split {split!r}) from the Hugging Face hub "
            f"({type(err).__name__}: {message}). Download it where the hub is reachable and run again "
            "with --source local --input <file or folder>"
        ) from None
    return loaded.to_pandas().to_dict(orient="records")


# ------------------------------------------------------------------------------------------------ building


def check_columns(rows: list[dict], spec: DatasetSpec, where: str) -> None:
    if not rows:
        raise PrepareDataError(f"{where}: no rows")
    columns = set(rows[0])
    missing = [c for c in spec.columns if c not in columns]
    if missing:
        hint = ""
        for other in DATASETS.values():
            if other is not spec and all(c in columns for c in other.columns):
                hint = f"; these are {other.name}'s columns: did you mean --dataset {other.name}?"
        raise PrepareDataError(
            f"{where}: --dataset {spec.name} needs the columns {list(spec.columns)}, missing {missing} "
            f"(the input has {sorted(columns)}){hint}"
        )


def to_verl_row(row: dict, spec: DatasetSpec, *, data_source: str, instruction: str, keep_solutions: bool) -> dict:
    question = row.get("question")
    if question is None or not str(question).strip():
        raise ValueError("question is empty")
    question = str(question).strip()
    ground_truth = spec.ground_truth(row)
    content = f"{question}\n\n{instruction}" if instruction else question
    return {
        "data_source": data_source,
        "prompt": [{"role": "user", "content": content}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": ground_truth},
        "extra_info": {"question": question, **spec.extra(row, keep_solutions)},
    }


def split_indices(n: int, *, val_size: int, test_size: int, seed: int, max_samples: int | None):
    import numpy as np

    order = np.random.default_rng(seed).permutation(n)
    if max_samples is not None:
        order = order[:max_samples]
    if val_size + test_size >= len(order):
        raise PrepareDataError(
            f"--val-size {val_size} + --test-size {test_size} leave no training rows out of {len(order)} "
            f"usable rows{' (after --max-samples)' if max_samples is not None else ''}; make them smaller"
        )
    test = order[:test_size]
    val = order[test_size : test_size + val_size]
    train = order[test_size + val_size :]
    return {"train": train.tolist(), "val": val.tolist(), "test": test.tolist()}


def write_parquet(rows: list[dict], path: Path) -> None:
    import pandas as pd

    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows).to_parquet(tmp, index=False)
    os.replace(tmp, path)  # a reader never sees half a file


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    spec = DATASETS[args.dataset]
    if args.source == "hub":
        if args.input is not None:
            raise PrepareDataError("--input is for --source local; --source hub downloads the dataset")
        raw = read_hub(spec, args.split)
        where = f"{spec.hub_id} from the hub"
    else:
        if args.input is None:
            raise PrepareDataError(
                "--input is required with --source local (a .parquet/.jsonl/.json file or a dataset folder); "
                "or use --source hub"
            )
        raw = read_local(args.input, args.split, spec)
        where = f"--input {args.input}"
    check_columns(raw, spec, where)

    converted: list[dict] = []
    skipped: list[tuple[int, str]] = []
    for index, row in enumerate(raw):
        try:
            out = to_verl_row(
                row, spec, data_source=args.data_source, instruction=args.instruction,
                keep_solutions=args.keep_r1_solutions,
            )
        except ValueError as err:
            skipped.append((index, str(err)))
            continue
        out["extra_info"] = {"source_row": index, "dataset": spec.hub_id, **out["extra_info"]}
        converted.append(out)
    if not converted:
        first = f" (row {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise PrepareDataError(f"{where}: no usable row{first}")

    indices = split_indices(
        len(converted), val_size=args.val_size, test_size=args.test_size, seed=args.seed, max_samples=args.max_samples
    )
    out_dir = Path(args.output_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for split in SPLITS:
        rows = []
        for position, i in enumerate(indices[split]):
            row = dict(converted[i])
            row["extra_info"] = {"split": split, "index": position, **row["extra_info"]}
            rows.append(row)
        path = out_dir / f"{split}.parquet"
        counts[split] = len(rows)
        if rows:
            write_parquet(rows, path)
        elif path.exists():
            path.unlink()  # an empty split: no stale file from an earlier run is left to be read
    manifest = {
        "dataset": spec.hub_id,
        "source": args.source,
        "input": args.input,
        "split": args.split,
        "seed": args.seed,
        "max_samples": args.max_samples,
        "data_source": args.data_source,
        "instruction": args.instruction,
        "rows_read": len(raw),
        "rows_skipped": len(skipped),
        "first_skipped": [{"row": i, "reason": r} for i, r in skipped[:5]],
        "counts": counts,
        "files": {s: f"{s}.parquet" for s in SPLITS if counts[s]},
    }
    (out_dir / "prepare_data.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ------------------------------------------------------------------------------------------------ CLI


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prepare_data.py",
        description="DeepMath-103K or GSM8K -> verl RL parquet (train/val/test).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--source", choices=("local", "hub"), default="local")
    parser.add_argument("--input", default=None, help="local .parquet/.jsonl/.json file or dataset folder")
    parser.add_argument("--split", default="train", help="which split of the input (folders and the hub)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--val-size", type=non_negative_int, default=50, help="rows in val.parquet")
    parser.add_argument("--test-size", type=non_negative_int, default=500, help="rows in test.parquet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-samples", type=positive_int, default=None, help="use at most this many rows")
    parser.add_argument(
        "--data-source", default=DEFAULT_DATA_SOURCE, choices=BOXED_MATH_DATA_SOURCES,
        help="data_source of every row: selects verl's default \\boxed{} math scorer",
    )
    parser.add_argument("--instruction", default=INSTRUCTION, help="appended to each question")
    parser.add_argument(
        "--keep-r1-solutions", action="store_true",
        help="DeepMath: keep r1_solution_1..3 in extra_info (large)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.keep_r1_solutions and args.dataset != "deepmath":
        parser.error("--keep-r1-solutions is for --dataset deepmath only")
    try:
        manifest = prepare(args)
    except PrepareDataError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    counts = manifest["counts"]
    skipped = manifest["rows_skipped"]
    print(
        f"{manifest['dataset']}: {manifest['rows_read']} rows read, {skipped} skipped"
        + (f" (first: row {manifest['first_skipped'][0]['row']}, {manifest['first_skipped'][0]['reason']})" if skipped else "")
    )
    for split in SPLITS:
        where = Path(args.output_dir) / f"{split}.parquet"
        print(f"  {split:5s} {counts[split]:7d} rows  {where if counts[split] else '(empty: not written)'}")
    print(f"  data_source={manifest['data_source']!r} (verl's default reward scores the last \\boxed{{}})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
