"""The real-LM build (quick mode: 4 supervised steps): layout, manifest, tokenizer, data, reuse and refusals."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoTokenizer

from effopd_verl.lm.build import LMAssets, build_lm_assets
from effopd_verl.lm.chat import ChatEncoder
from effopd_verl.lm.tasks import get_task, number_words, task_names
from effopd_verl.toy.build import MARKER
from effopd_verl.toy.reward import compute_score

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_lm_assets.py"


def test_tasks_have_short_digit_answers():
    """At least two tasks; every answer is digits (one token each) of ≤ 7 tokens with <|im_end|>."""
    assert len(task_names()) >= 2
    for name in task_names():
        pairs = get_task(name).enumerate_all()
        assert len({q for q, _ in pairs}) == len(pairs) >= 810
        assert all(a.isdigit() and len(a) <= get_task(name).max_answer_chars <= 7 for _, a in pairs)
    assert number_words(347) == "three hundred forty-seven" and number_words(90) == "ninety"
    assert number_words(13) == "thirteen" and number_words(500) == "five hundred"


def test_list_tasks_and_usage_errors():
    out = subprocess.run([sys.executable, str(SCRIPT), "--list-tasks"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and [line.split("\t")[0] for line in out.stdout.splitlines()] == task_names()
    assert subprocess.run([sys.executable, str(SCRIPT), "/tmp/x"], capture_output=True, timeout=120).returncode == 2
    assert subprocess.run([sys.executable, str(SCRIPT), "/tmp/x", "--task", "nope"], capture_output=True,
                          timeout=120).returncode == 2


def test_bad_settings_fail_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown LM task"):
        build_lm_assets(tmp_path / "a", task="nope")
    with pytest.raises(ValueError, match="student_target"):
        build_lm_assets(tmp_path / "a", task="succ", student_target=1.5)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "half.parquet").write_text("half-written")
    with pytest.raises(ValueError, match="holds no complete build"):
        build_lm_assets(tmp_path / "b", task="succ", quick=True)
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_layout_manifest_and_models(lm_quick_assets):
    a = lm_quick_assets
    assert isinstance(a, LMAssets) and (Path(a.out_dir) / MARKER).exists()
    for role_dir in (a.teacher_dir, a.student_dir):
        names = set(os.listdir(role_dir))
        assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                "tokenizer_config.json", "chat_template.jinja"} <= names
        tokenizer = AutoTokenizer.from_pretrained(role_dir)
        assert tokenizer.eos_token_id == tokenizer.pad_token_id == 2
    assert set(a.accuracies) == {"base", "student", "teacher"}
    assert all(set(acc) == {"val", "test"} for acc in a.accuracies.values())
    assert (a.teacher_accuracy, a.student_accuracy, a.base_accuracy) == tuple(
        a.accuracies[r]["test"] for r in ("teacher", "student", "base"))
    assert a.source["wheel_sha256"] and a.num_params == 134_515_008 and a.quick
    assert a.student_step <= a.teacher_step == 4
    record = json.loads((Path(a.out_dir) / "assets.json").read_text())
    assert record["train_file"] == "data/train.parquet" and record["accuracies"] == a.accuracies
    assert Path(a.cache_dir).is_dir() and Path(a.cache_dir) != Path(a.out_dir)


@pytest.mark.slow
def test_parquet_rows_are_verl_rl_format_with_short_prompts(lm_quick_assets):
    a = lm_quick_assets
    encoder = ChatEncoder(AutoTokenizer.from_pretrained(a.student_dir))
    rows = {s: pd.read_parquet(f) for s, f in (("train", a.train_file), ("val", a.val_file), ("test", a.test_file))}
    assert {s: len(r) for s, r in rows.items()} == a.num_rows
    seen = [set(r.extra_info.map(lambda e: e["question"])) for r in rows.values()]
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    test = rows["test"]
    assert set(test.data_source) == {"effopd_toy/succ"}
    for prompt, rm in zip(test.prompt, test.reward_model):
        assert [m["role"] for m in prompt] == ["system", "user"] and prompt[0]["content"] == ""
        question = prompt[1]["content"]
        assert rm["ground_truth"] == str(int(question.removesuffix("+1=")) + 1)
        assert len(encoder.prompt(question)) <= a.max_prompt_length <= 24
    assert a.max_response_length <= 8
    assert compute_score("effopd_toy/succ", " 48 ", "48") == 1.0


@pytest.mark.slow
def test_a_complete_folder_is_reused_and_another_build_refused(lm_quick_assets, tmp_path):
    again = build_lm_assets(lm_quick_assets.out_dir, task="succ", seed=0, quick=True)
    fields = {f.name for f in dataclasses.fields(again)} - {"reused", "cache_dir"}
    assert {k: getattr(again, k) for k in fields} == {k: getattr(lm_quick_assets, k) for k in fields}
    with pytest.raises(ValueError, match="already holds LM assets"):
        build_lm_assets(lm_quick_assets.out_dir, task="succ", seed=1, quick=True)
    # a second folder of the same build links the cached one: no second training
    other = build_lm_assets(tmp_path / "other", task="succ", seed=0, quick=True)
    assert other.reused and other.cache_dir == lm_quick_assets.cache_dir
    mine, theirs = Path(other.teacher_dir) / "model.safetensors", Path(lm_quick_assets.teacher_dir) / "model.safetensors"
    assert mine.read_bytes() == theirs.read_bytes()
    if os.stat(mine.parent).st_dev == os.stat(other.cache_dir).st_dev:
        assert os.path.samefile(mine, theirs)  # hard links to the cache, not a copy
