"""scripts/prepare_data.py on small local fixtures of DeepMath-103K and GSM8K, read back by real verl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from script_module import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "prepare_data.py"

prepare_data = load_script("prepare_data")

# GSM8K as the dataset has it: a worked solution whose last line is "#### <number>"
GSM8K_ROWS = [
    {"question": "A shop sells 1,234 pens. How many?", "answer": "It sells <<1234=1234>>1,234.\n#### 1,234"},
    {"question": "It is 3 degrees colder than 0. Temperature?", "answer": "0 - 3 = <<0-3=-3>>-3\n#### -3"},
    {"question": "Tom pays $18. How much?", "answer": "He pays $18.\n#### $18"},
    {"question": "Half of 1?", "answer": "1/2 = 0.5\n#### 0.5"},
    {"question": "A worked answer without a final line", "answer": "no marker here"},  # skipped
] + [{"question": f"What is {i} + {i}?", "answer": f"{i} + {i} = <<{i}+{i}={2 * i}>>{2 * i}\n#### {2 * i}"}
     for i in range(5, 25)]
GSM8K_TRUTHS = {0: "1234", 1: "-3", 2: "18", 3: "0.5"}

# DeepMath-103K's columns: question, final_answer, difficulty, topic, r1_solution_1..3
DEEPMATH_ROWS = [
    {"question": "Evaluate \\int_0^1 x\\,dx.", "final_answer": "\\frac{1}{2}"},
    {"question": "Solve x + 1 = 3.", "final_answer": "$2$"},
    {"question": "Compute 3 + 4.", "final_answer": "\\boxed{7}"},
    {"question": "Find the limit of (1 + 1/n)^n.", "final_answer": "e"},
    {"question": "An empty answer.", "final_answer": "  "},  # skipped
] + [{"question": f"Compute {i} squared.", "final_answer": str(i * i)} for i in range(2, 22)]
for _i, _row in enumerate(DEEPMATH_ROWS):
    _row.update(difficulty=3.0 + (_i % 5) * 0.5, topic="Mathematics -> Algebra",
                r1_solution_1=f"solution {_i}", r1_solution_2="", r1_solution_3="another")
DEEPMATH_TRUTHS = {0: "\\frac{1}{2}", 1: "2", 2: "7", 3: "e"}


def run(*argv: str) -> dict:
    assert prepare_data.main(list(argv)) == 0
    out_dir = Path(argv[list(argv).index("--output-dir") + 1])
    return json.loads((out_dir / "prepare_data.json").read_text())


def fails(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        prepare_data.main(list(argv))
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def read_all(out_dir: Path) -> dict[str, pd.DataFrame]:
    return {s: pd.read_parquet(out_dir / f"{s}.parquet") for s in ("train", "val", "test")
            if (out_dir / f"{s}.parquet").exists()}


@pytest.fixture
def gsm8k_parquet(tmp_path) -> Path:
    path = tmp_path / "gsm8k.parquet"
    pd.DataFrame(GSM8K_ROWS).to_parquet(path)
    return path


@pytest.fixture
def deepmath_jsonl(tmp_path) -> Path:
    path = tmp_path / "deepmath.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in DEEPMATH_ROWS))
    return path


def tiny_tokenizer():
    """A word-level tokenizer with a chat template: enough for verl's RLHFDataset, no download."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"[UNK]": 0, "[PAD]": 1, "[EOS]": 2}
    backend = Tokenizer(models.WordLevel(words, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token="[EOS]")
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    return tokenizer


# ------------------------------------------------------------------------------------------- schema


@pytest.mark.parametrize("dataset", ["gsm8k", "deepmath"])
def test_output_loads_through_verl_rlhf_dataset(dataset, tmp_path, gsm8k_parquet, deepmath_jsonl):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    source = gsm8k_parquet if dataset == "gsm8k" else deepmath_jsonl
    out = tmp_path / "out"
    manifest = run("--dataset", dataset, "--input", str(source), "--output-dir", str(out),
                   "--val-size", "3", "--test-size", "4")
    config = OmegaConf.create({
        "prompt_key": "prompt", "max_prompt_length": 256, "filter_overlong_prompts": True, "truncation": "error",
        "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "cache"), "return_raw_chat": True,
    })
    data = RLHFDataset(data_files=str(out / "train.parquet"), tokenizer=tiny_tokenizer(), config=config)
    assert len(data) == manifest["counts"]["train"] == 24 - 3 - 4  # 25 rows, one unusable; none filtered
    item = data[5]
    (message,) = item["raw_prompt"]
    assert message["role"] == "user"
    assert message["content"].endswith("\n\nPlease reason step by step, and put your final answer within \\boxed{}.")
    assert message["content"].startswith(item["extra_info"]["question"])
    assert item["data_source"] == "lighteval/MATH" and item["ability"] == "math"
    assert item["reward_model"]["style"] == "rule"
    assert item["reward_model"]["ground_truth"] == item["extra_info"]["answer"]
    assert item["index"] == 5 and item["extra_info"]["split"] == "train"
    expected_dataset = "openai/gsm8k" if dataset == "gsm8k" else "zwhe99/DeepMath-103K"
    assert item["extra_info"]["dataset"] == expected_dataset


def test_columns_of_each_split(tmp_path, deepmath_jsonl):
    run("--dataset", "deepmath", "--input", str(deepmath_jsonl), "--output-dir", str(tmp_path / "o"),
        "--val-size", "2", "--test-size", "2")
    for frame in read_all(tmp_path / "o").values():
        assert list(frame.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
        extra = frame.extra_info.iloc[0]
        assert {"split", "index", "source_row", "dataset", "question", "answer", "difficulty", "topic"} <= set(extra)
        assert "r1_solutions" not in extra  # large: only with --keep-r1-solutions
        assert isinstance(extra["difficulty"], float) and extra["topic"] == "Mathematics -> Algebra"


def test_keep_r1_solutions(tmp_path, deepmath_jsonl):
    run("--dataset", "deepmath", "--input", str(deepmath_jsonl), "--output-dir", str(tmp_path / "o"),
        "--val-size", "0", "--test-size", "0", "--keep-r1-solutions")
    frame = read_all(tmp_path / "o")["train"]
    row = frame[frame.extra_info.map(lambda e: e["source_row"]) == 0].iloc[0]
    assert list(row.extra_info["r1_solutions"]) == ["solution 0", "another"]  # the empty one is dropped


# ------------------------------------------------------------------------------------------- ground truths


@pytest.mark.parametrize("dataset, truths", [("gsm8k", GSM8K_TRUTHS), ("deepmath", DEEPMATH_TRUTHS)])
def test_ground_truths_and_verl_default_reward(dataset, truths, tmp_path, gsm8k_parquet, deepmath_jsonl):
    from verl.utils.reward_score import default_compute_score

    source = gsm8k_parquet if dataset == "gsm8k" else deepmath_jsonl
    manifest = run("--dataset", dataset, "--input", str(source), "--output-dir", str(tmp_path / "o"),
                   "--val-size", "2", "--test-size", "2")
    assert manifest["rows_skipped"] == 1 and manifest["first_skipped"][0]["row"] == 4
    rows = pd.concat(read_all(tmp_path / "o").values())
    by_source_row = {r.extra_info["source_row"]: r for r in rows.itertuples()}
    assert sorted(by_source_row) == [i for i in range(25) if i != 4]
    for i, truth in truths.items():
        assert by_source_row[i].reward_model["ground_truth"] == truth
    for row in rows.itertuples():  # the data_source is one verl's default reward scores by \boxed{}
        truth = row.reward_model["ground_truth"]
        right = default_compute_score(row.data_source, f"Step by step ... so \\boxed{{{truth}}}", truth)
        wrong = default_compute_score(row.data_source, "Step by step ... so \\boxed{31337}", truth)
        assert (right, wrong) == (1.0, 0.0), truth


def test_gsm8k_final_answer_parsing():
    parse = prepare_data.gsm8k_ground_truth
    assert parse({"answer": "x\n#### 1,234"}) == "1234"
    assert parse({"answer": "x\n#### -1,000,000"}) == "-1000000"
    assert parse({"answer": "#### 3\nmore\n#### 12."}) == "12"  # the last marker
    assert parse({"answer": "x\n#### $5"}) == "5"
    for bad in ({"answer": "no marker"}, {"answer": "#### twelve"}, {"answer": None}):
        with pytest.raises(ValueError):
            parse(bad)


@pytest.mark.parametrize("data_source", prepare_data.BOXED_MATH_DATA_SOURCES)
def test_every_offered_data_source_is_scored_by_boxed_math_rules(data_source):
    from verl.utils.reward_score import default_compute_score

    score = default_compute_score(data_source, "so the answer is \\boxed{\\frac{1}{2}}", "\\frac{1}{2}")
    assert float(score["score"] if isinstance(score, dict) else score) == 1.0


# ------------------------------------------------------------------------------------------- splits


def test_split_sizes_are_disjoint_and_cover_the_data(tmp_path, gsm8k_parquet):
    manifest = run("--dataset", "gsm8k", "--input", str(gsm8k_parquet), "--output-dir", str(tmp_path / "o"),
                   "--val-size", "5", "--test-size", "7", "--seed", "3")
    frames = read_all(tmp_path / "o")
    assert {s: len(f) for s, f in frames.items()} == manifest["counts"] == {"train": 12, "val": 5, "test": 7}
    seen = [e["source_row"] for f in frames.values() for e in f.extra_info]
    assert len(seen) == len(set(seen)) == 24
    for split, frame in frames.items():
        assert [e["index"] for e in frame.extra_info] == list(range(len(frame)))
        assert {e["split"] for e in frame.extra_info} == {split}


def test_max_samples(tmp_path, gsm8k_parquet):
    manifest = run("--dataset", "gsm8k", "--input", str(gsm8k_parquet), "--output-dir", str(tmp_path / "o"),
                   "--val-size", "2", "--test-size", "3", "--max-samples", "10")
    assert manifest["counts"] == {"train": 5, "val": 2, "test": 3}


def test_same_arguments_same_files_and_the_seed_matters(tmp_path, gsm8k_parquet):
    def split_rows(out: str, seed: str) -> dict[str, list[int]]:
        run("--dataset", "gsm8k", "--input", str(gsm8k_parquet), "--output-dir", str(tmp_path / out),
            "--val-size", "4", "--test-size", "4", "--seed", seed)
        return {s: [e["source_row"] for e in f.extra_info] for s, f in read_all(tmp_path / out).items()}

    first, again, other = split_rows("a", "0"), split_rows("b", "0"), split_rows("c", "1")
    assert first == again
    for split in ("train", "val", "test"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / f"{split}.parquet"),
                                      pd.read_parquet(tmp_path / "b" / f"{split}.parquet"))
    assert first != other


def test_an_empty_split_is_not_written_and_no_stale_file_is_left(tmp_path, gsm8k_parquet):
    out = tmp_path / "o"
    run("--dataset", "gsm8k", "--input", str(gsm8k_parquet), "--output-dir", str(out), "--val-size", "3",
        "--test-size", "2")
    assert (out / "val.parquet").exists()
    manifest = run("--dataset", "gsm8k", "--input", str(gsm8k_parquet), "--output-dir", str(out),
                   "--val-size", "0", "--test-size", "2")
    assert manifest["counts"]["val"] == 0 and not (out / "val.parquet").exists()


# ------------------------------------------------------------------------------------------- input formats


def test_json_list_and_saved_datasets_folder(tmp_path):
    import datasets

    rows = GSM8K_ROWS[:12]
    (tmp_path / "g.json").write_text(json.dumps(rows))
    a = run("--dataset", "gsm8k", "--input", str(tmp_path / "g.json"), "--output-dir", str(tmp_path / "a"),
            "--val-size", "1", "--test-size", "1")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                          "test": datasets.Dataset.from_list(GSM8K_ROWS[12:])}).save_to_disk(str(tmp_path / "saved"))
    b = run("--dataset", "gsm8k", "--input", str(tmp_path / "saved"), "--output-dir", str(tmp_path / "b"),
            "--val-size", "1", "--test-size", "1")
    assert a["counts"] == b["counts"] == {"train": 9, "val": 1, "test": 1}  # 12 rows, one unusable
    c = run("--dataset", "gsm8k", "--input", str(tmp_path / "saved"), "--split", "test",
            "--output-dir", str(tmp_path / "c"), "--val-size", "0", "--test-size", "0")
    assert c["counts"]["train"] == len(GSM8K_ROWS) - 12


def test_hub_snapshot_folder_reads_one_split_of_one_config(tmp_path):
    """GSM8K's hub layout: main/ and socratic/, each with train and test parquet files."""
    snapshot = tmp_path / "gsm8k"
    for config in ("main", "socratic"):
        (snapshot / config).mkdir(parents=True)
        pd.DataFrame(GSM8K_ROWS[:20]).to_parquet(snapshot / config / "train-00000-of-00001.parquet")
        pd.DataFrame(GSM8K_ROWS[20:]).to_parquet(snapshot / config / "test-00000-of-00001.parquet")
    (snapshot / "README.md").write_text("card")
    train = run("--dataset", "gsm8k", "--input", str(snapshot), "--output-dir", str(tmp_path / "a"),
                "--val-size", "0", "--test-size", "0")
    assert train["rows_read"] == 20
    test = run("--dataset", "gsm8k", "--input", str(snapshot), "--split", "test", "--output-dir",
               str(tmp_path / "b"), "--val-size", "0", "--test-size", "0")
    assert test["rows_read"] == len(GSM8K_ROWS) - 20
    # DeepMath-103K's layout: data/train-0000k-of-0000n.parquet
    (tmp_path / "deepmath" / "data").mkdir(parents=True)
    for k in range(2):
        pd.DataFrame(DEEPMATH_ROWS[k * 12:(k + 1) * 12]).to_parquet(
            tmp_path / "deepmath" / "data" / f"train-0000{k}-of-00002.parquet")
    deepmath = run("--dataset", "deepmath", "--input", str(tmp_path / "deepmath"), "--output-dir",
                   str(tmp_path / "c"), "--val-size", "0", "--test-size", "0")
    assert deepmath["rows_read"] == 24


# ------------------------------------------------------------------------------------------- errors


def test_missing_input_file_names_the_argument(tmp_path, capsys):
    err = fails(capsys, "--dataset", "gsm8k", "--input", str(tmp_path / "nope.parquet"),
                "--output-dir", str(tmp_path / "o"))
    assert f"--input {tmp_path / 'nope.parquet'}: no such file or folder" in err
    assert not (tmp_path / "o").exists()


def test_wrong_columns_name_the_dataset_and_suggest_the_other(tmp_path, capsys, gsm8k_parquet):
    err = fails(capsys, "--dataset", "deepmath", "--input", str(gsm8k_parquet), "--output-dir", str(tmp_path / "o"))
    assert "--dataset deepmath needs the columns ['question', 'final_answer'], missing ['final_answer']" in err
    assert "did you mean --dataset gsm8k?" in err
    pd.DataFrame({"prompt": ["x"], "solution": ["y"]}).to_parquet(tmp_path / "other.parquet")
    err = fails(capsys, "--dataset", "gsm8k", "--input", str(tmp_path / "other.parquet"),
                "--output-dir", str(tmp_path / "o"))
    assert "missing ['question', 'answer']" in err and "did you mean" not in err


def test_argument_errors(tmp_path, capsys, gsm8k_parquet):
    out = ["--output-dir", str(tmp_path / "o")]
    assert "--input is required with --source local" in fails(capsys, "--dataset", "gsm8k", *out)
    assert "--input is for --source local" in fails(
        capsys, "--dataset", "gsm8k", "--source", "hub", "--input", str(gsm8k_parquet), *out)
    err = fails(capsys, "--dataset", "gsm8k", "--input", str(gsm8k_parquet), "--val-size", "20", "--test-size", "4",
                *out)
    assert "--val-size 20 + --test-size 4 leave no training rows out of 24" in err
    assert "--val-size" in fails(capsys, "--dataset", "gsm8k", "--input", str(gsm8k_parquet), "--val-size", "-1", *out)
    assert "--max-samples" in fails(capsys, "--dataset", "gsm8k", "--input", str(gsm8k_parquet),
                                    "--max-samples", "0", *out)
    assert "--keep-r1-solutions is for --dataset deepmath only" in fails(
        capsys, "--dataset", "gsm8k", "--input", str(gsm8k_parquet), "--keep-r1-solutions", *out)
    assert "--data-source" in fails(capsys, "--dataset", "gsm8k", "--input", str(gsm8k_parquet),
                                    "--data-source", "openai/gsm8k", *out)  # verl scores that by '####'


def test_input_errors(tmp_path, capsys):
    out = ["--output-dir", str(tmp_path / "o")]
    (tmp_path / "empty").mkdir()
    assert "holds no .parquet, .jsonl or .json data file" in fails(
        capsys, "--dataset", "gsm8k", "--input", str(tmp_path / "empty"), *out)
    (tmp_path / "g.csv").write_text("question,answer\n")
    assert "is not a .parquet, .jsonl or .json file" in fails(
        capsys, "--dataset", "gsm8k", "--input", str(tmp_path / "g.csv"), *out)
    (tmp_path / "broken.parquet").write_text("not parquet")
    assert f"--input {tmp_path / 'broken.parquet'}: cannot read" in fails(
        capsys, "--dataset", "gsm8k", "--input", str(tmp_path / "broken.parquet"), *out)
    (tmp_path / "splits").mkdir()
    pd.DataFrame(GSM8K_ROWS).to_parquet(tmp_path / "splits" / "train.parquet")
    assert "--split validation: the files under --input" in fails(
        capsys, "--dataset", "gsm8k", "--input", str(tmp_path / "splits"), "--split", "validation", *out)
    pd.DataFrame([GSM8K_ROWS[4]] * 3).to_parquet(tmp_path / "bad.parquet")
    assert "no usable row (row 0: answer has no '#### <number>' line)" in fails(
        capsys, "--dataset", "gsm8k", "--input", str(tmp_path / "bad.parquet"), *out)


def test_hub_unreachable_says_what_to_do(tmp_path):
    # a fresh process: huggingface_hub reads HF_HUB_OFFLINE when it is first imported
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}  # an empty cache: nothing to fall back on
    out = subprocess.run([sys.executable, str(SCRIPT), "--dataset", "deepmath", "--source", "hub",
                          "--output-dir", str(tmp_path / "o")], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2
    assert "--source hub: cannot load zwhe99/DeepMath-103K" in out.stderr
    assert "run again with --source local --input" in out.stderr


def test_command_line(tmp_path, gsm8k_parquet):
    ok = subprocess.run([sys.executable, str(SCRIPT), "--dataset", "gsm8k", "--input", str(gsm8k_parquet),
                         "--output-dir", str(tmp_path / "o"), "--val-size", "2", "--test-size", "2"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "25 rows read, 1 skipped" in ok.stdout and "train      20 rows" in ok.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "--dataset", "gsm8k", "--input", str(tmp_path / "x.parquet"),
                          "--output-dir", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "error: --input" in bad.stderr and "no such file" in bad.stderr
