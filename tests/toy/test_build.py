"""The whole build (quick mode): files, models, accuracies, reuse, determinism."""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from effopd_verl.toy.build import MARKER, build_assets
from effopd_verl.toy.reward import compute_score
from effopd_verl.toy.train import Encoder, greedy_answers


def _digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root, except the record of timings."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "assets.json":
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_layout_and_recorded_paths(toy_assets):
    a = toy_assets
    for d in (a.tokenizer_dir, a.teacher_dir, a.student_dir):
        assert os.path.isdir(d)
    for role_dir in (a.teacher_dir, a.student_dir):
        names = set(os.listdir(role_dir))
        assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
                "tokenizer_config.json", "chat_template.jinja"} <= names
    for f in (a.train_file, a.val_file, a.test_file, a.reward_path):
        assert os.path.isfile(f)
    assert a.reward_name == "compute_score" and a.reward_path.endswith("reward.py")
    assert os.path.dirname(a.reward_path) == a.out_dir  # next to the data: a config can name it relative to the folder
    rows = {s: len(pd.read_parquet(f)) for s, f in (("train", a.train_file), ("val", a.val_file), ("test", a.test_file))}
    assert rows == a.num_rows and rows["train"] >= 2000
    assert a.max_prompt_length <= 32 and a.max_response_length <= 32
    assert (Path(a.out_dir) / MARKER).exists()


def test_teacher_clearly_beats_the_student(toy_assets):
    a = toy_assets
    assert a.teacher_accuracy >= a.student_accuracy + 0.2, (a.teacher_accuracy, a.student_accuracy)
    assert a.student_accuracy <= 0.3
    assert a.student_step < a.teacher_step


def test_models_load_with_auto_classes_and_answer_through_the_chat_template(toy_assets):
    a = toy_assets
    tokenizer = AutoTokenizer.from_pretrained(a.teacher_dir)
    model = AutoModelForCausalLM.from_pretrained(a.teacher_dir)
    assert model.config.model_type == "qwen3" and model.config.tie_word_embeddings
    assert model.config.vocab_size == len(tokenizer)
    assert 1e5 <= sum(p.numel() for p in model.parameters()) <= 1e6
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    test = pd.read_parquet(a.test_file).head(64)
    # the way a rollout does it: chat template -> generate -> decode without special tokens -> reward
    scores = []
    for prompt, rm, source in zip(test.prompt, test.reward_model, test.data_source):
        ids = tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)
        out = model.generate(**ids, do_sample=False, max_new_tokens=a.max_response_length)
        text = tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        scores.append(compute_score(data_source=source, solution_str=text, ground_truth=rm["ground_truth"]))
    # the same as the batched, left-padded greedy decoding that measured the accuracy
    batched = greedy_answers(model, Encoder(tokenizer), [p[0]["content"] for p in test.prompt], a.max_response_length)
    assert scores == [float(t == rm["ground_truth"]) for t, rm in zip(batched, test.reward_model)]


def test_student_has_the_teachers_architecture_and_tokenizer_but_other_weights(toy_assets):
    a = toy_assets
    s = AutoModelForCausalLM.from_pretrained(a.student_dir)
    t = AutoModelForCausalLM.from_pretrained(a.teacher_dir)
    strip = lambda c: {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}  # noqa: E731
    assert strip(s.config) == strip(t.config)
    assert AutoTokenizer.from_pretrained(a.student_dir).get_vocab() == AutoTokenizer.from_pretrained(a.teacher_dir).get_vocab()
    diff = [(ps - pt).abs().max().item() for ps, pt in zip(s.parameters(), t.parameters())]
    assert max(diff) > 0


def test_a_complete_folder_is_reused(toy_assets):
    again = build_assets(toy_assets.out_dir, task="add", seed=0, quick=True)
    assert again.reused
    fields = {f.name for f in dataclasses.fields(again)} - {"reused"}
    assert {k: getattr(again, k) for k in fields} == {k: getattr(toy_assets, k) for k in fields}


def test_a_second_student_from_the_same_supervised_run(toy_assets, close_student_assets):
    """student_target=0.5 with reuse_training: the teacher and the data bit for bit those of the first build, the
    student a later snapshot of the same run, closer to the teacher."""
    first, close = Path(toy_assets.out_dir), Path(close_student_assets.out_dir)
    for part in ("teacher", "data", "tokenizer"):
        assert _digest(close / part) == _digest(first / part), part
    assert _digest(close / "student") != _digest(first / "student")
    assert close_student_assets.teacher_step == toy_assets.teacher_step
    assert close_student_assets.student_step > toy_assets.student_step
    assert toy_assets.student_accuracy < close_student_assets.student_accuracy < close_student_assets.teacher_accuracy


def test_a_folder_of_another_build_is_refused(toy_assets):
    with pytest.raises(ValueError, match="already holds toy assets"):
        build_assets(toy_assets.out_dir, task="add", seed=1, quick=True)
    with pytest.raises(ValueError, match="already holds toy assets"):
        build_assets(toy_assets.out_dir, task="add", seed=0, quick=True, student_target=0.05)
    assert build_assets(toy_assets.out_dir, task="add", seed=0, quick=True, student_target=0.1).reused


def test_student_target_must_be_an_accuracy(tmp_path):
    with pytest.raises(ValueError, match="student_target"):
        build_assets(tmp_path, task="add", quick=True, student_target=1.5)
    assert not any(tmp_path.iterdir())


def test_an_incomplete_folder_is_rebuilt_and_an_older_builders_too(tmp_path, monkeypatch):
    import effopd_verl.toy.build as build

    calls = []
    monkeypatch.setattr(build, "make_splits", lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(RuntimeError("stop")))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.parquet").write_text("half-written")
    with pytest.raises(RuntimeError, match="stop"):  # no marker: it builds (stopped here)
        build.build_assets(tmp_path, task="add", seed=0, quick=True)
    assert not (tmp_path / "data").exists() and not (tmp_path / MARKER).exists()
    (tmp_path / MARKER).write_text(json.dumps({"task": "add", "seed": 0, "quick": True, "build_version": 0}))
    with pytest.raises(RuntimeError, match="stop"):  # an older builder's marker: it rebuilds
        build.build_assets(tmp_path, task="add", seed=0, quick=True)
    assert not (tmp_path / MARKER).exists() and len(calls) == 2


def test_the_build_is_deterministic(tmp_path):
    """Same (task, seed): bitwise the same files (the other task, whose quick build is the faster one);
    the marker is written last."""
    first = build_assets(tmp_path / "first", task="reverse", seed=0, quick=True)
    second = build_assets(tmp_path / "again", task="reverse", seed=0, quick=True)
    assert not second.reused
    assert _digest(Path(second.out_dir)) == _digest(Path(first.out_dir))
    assert (second.teacher_accuracy, second.student_accuracy) == (first.teacher_accuracy, first.student_accuracy)
    assert first.teacher_accuracy >= first.student_accuracy + 0.2
    import effopd_verl.toy.build as build

    kept = build._last_training
    assert kept is None or kept[0][0] != "reverse", "a build without reuse_training kept its snapshots"
    record = json.loads((Path(second.out_dir) / "assets.json").read_text())
    assert record["train_file"] == "data/train.parquet"  # relative: the folder can move
    marker = Path(second.out_dir) / MARKER
    assert all(marker.stat().st_mtime_ns >= p.stat().st_mtime_ns for p in Path(second.out_dir).rglob("*") if p.is_file())


def test_full_profile_sizes_suit_the_benchmark():
    """Test ≥ 1000 prompts; train covers batches of 256 over 128 steps (add: its whole space, ~3.9 passes)."""
    from effopd_verl.toy.build import _profile
    from effopd_verl.toy.tasks import task_names

    for name in task_names():
        sizes = _profile(name, quick=False).sizes
        assert sizes.test >= 1000 and sizes.val >= 50
        assert sizes.train >= 256 * 128
