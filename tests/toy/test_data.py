"""The parquet splits: disjoint, deterministic, and read by verl 0.9.1's own RL dataset class."""

import pandas as pd
import pytest
from omegaconf import OmegaConf

from effopd_verl.toy.data import SplitSizes, make_splits, to_frame, write_split
from effopd_verl.toy.tasks import get_task, task_names
from effopd_verl.toy.tokenizer import build_tokenizer

SIZES = SplitSizes(train=300, val=20, test=50, select=10)


@pytest.mark.parametrize("name", task_names())
def test_splits_are_disjoint_deterministic_and_seeded(name):
    task = get_task(name)
    s = make_splits(task, 0, SIZES)
    parts = [s.train, s.val, s.test, s.select]
    assert [len(p) for p in parts] == [300, 20, 50, 10]
    questions = [q for p in parts for q, _ in p]
    assert len(set(questions)) == len(questions)
    assert s.held_out() == {q for p in parts[1:] for q, _ in p}
    assert make_splits(task, 0, SIZES) == s
    assert make_splits(task, 1, SIZES).test != s.test


def test_a_small_space_caps_train_at_what_is_left():
    s = make_splits(get_task("add"), 0, SplitSizes(train=100_000, val=256, test=1024, select=256))
    assert len(s.train) == 10_000 - 256 - 1024 - 256


def test_rows_follow_verls_rl_format():
    task = get_task("add")
    frame = to_frame(task, [("12+34=", "46"), ("1+2=", "3")], "test")
    assert list(frame.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    row = frame.iloc[1]
    assert row.data_source == "effopd_toy/add"
    assert row.prompt == [{"role": "user", "content": "1+2="}]
    assert row.reward_model == {"style": "rule", "ground_truth": "3"}
    assert row.extra_info == {"index": 1, "split": "test", "question": "1+2=", "answer": "3"}


@pytest.mark.parametrize("name", task_names())
def test_verl_rlhf_dataset_reads_the_files(name, tmp_path):
    from verl.utils.dataset.rl_dataset import RLHFDataset

    task = get_task(name)
    pairs = make_splits(task, 0, SIZES).val
    path = tmp_path / "val.parquet"
    write_split(task, pairs, "val", str(path))
    assert pd.read_parquet(path).shape == (20, 5)

    tokenizer = build_tokenizer()
    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 32, "filter_overlong_prompts": True,
                               "truncation": "error", "cache_dir": str(tmp_path / "cache"),
                               "filter_overlong_prompts_workers": 1})
    dataset = RLHFDataset(data_files=str(path), tokenizer=tokenizer, config=config)
    assert len(dataset) == 20  # nothing filtered as too long
    item = dataset[3]
    question, answer = pairs[3]
    assert item["raw_prompt"] == [{"role": "user", "content": question}]
    assert item["data_source"] == task.data_source
    assert item["reward_model"]["ground_truth"] == answer
    assert item["index"] == 3 and item["extra_info"]["split"] == "val"
