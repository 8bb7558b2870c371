"""effopd_verl.bench.checkpoint_scores and toy_testbed: the testbed protocol, and scoring a run folder's
checkpoints with the toy's real scorer (the checkpoints are real weights in verl's file layout: the initial
student's and the teacher's, so the scores are known from the build)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import Qwen3ForCausalLM

from effopd_verl.bench import checkpoint_scores
from effopd_verl.bench.checkpoint_scores import load_checkpoint_state, resolve_testbed, score_run
from effopd_verl.bench.measures import LOSS
from effopd_verl.bench.toy_testbed import TOY


def test_resolve_testbed():
    assert resolve_testbed("toy") is TOY and isinstance(TOY, checkpoint_scores.Testbed) and TOY.config_name == "toy_cpu"
    assert resolve_testbed("effopd_verl.bench.toy_testbed:TOY") is TOY
    assert resolve_testbed("smollm2").config_name == "smollm2_cpu"
    with pytest.raises(ValueError, match="expected one of \\['smollm2', 'toy'\\] or module:attribute"):
        resolve_testbed("smollm3")
    with pytest.raises(ValueError, match="cannot load no_such_module:X"):
        resolve_testbed("no_such_module:X")
    with pytest.raises(ValueError, match="lacks name, config_name, load_assets or scorer"):
        resolve_testbed("effopd_verl.bench.toy_testbed:ToyScorer")


def save_checkpoint(run_dir, step, model_dir):
    """A model's weights where verl's FSDP checkpoint manager puts one rank's actor weights."""
    actor = run_dir / "checkpoints" / f"global_step_{step}" / "actor"
    actor.mkdir(parents=True)
    torch.save(Qwen3ForCausalLM.from_pretrained(model_dir).state_dict(), actor / "model_world_size_1_rank_0.pt")


def test_score_run_scores_every_checkpoint_and_caches(toy_assets, tmp_path):
    a = toy_assets
    run = tmp_path / "run"
    save_checkpoint(run, 1, a.student_dir)
    save_checkpoint(run, 2, a.teacher_dir)
    assert set(load_checkpoint_state(run / "checkpoints" / "global_step_2")) >= {"model.embed_tokens.weight"}
    metrics = {1: {"timing_s/step": 3.0, "timing_s/save_checkpoint": 1.0, LOSS: 0.5,
                   "effopd/accepted_alpha": 2.0, "effopd/search_seconds": 0.5},
               2: {"timing_s/step": 2.5, "timing_s/save_checkpoint": 0.5, LOSS: 0.25, "val-core/toy/acc/mean@1": 0.9}}
    scorers = {"test": TOY.scorer(a, a.test_file), "val": TOY.scorer(a, a.val_file)}
    curves = score_run("t", run, metrics, scorers, every_step=("test", "val"))
    test, val = curves["test"], curves["val"]
    assert test.steps == [0, 1, 2] and test.wall == [0.0, 2.0, 4.0] and test.total_wall == 4.0
    # the build measured the same greedy exact match on the same test split
    assert test.acc == pytest.approx([a.student_accuracy, a.student_accuracy, a.teacher_accuracy])
    assert test.tlp[0] == test.tlp[1] < test.tlp[2] <= 0  # the teacher's answers are likelier under the teacher
    assert val.steps == [0, 1, 2] and test.loss == {1: 0.5, 2: 0.25} and test.verl_final_acc == 0.9
    assert test.searches[1]["accepted_alpha"] == 2.0 and val.verl_final_acc is None
    assert not (run / "checkpoints").exists()  # deleted once scored
    assert set(json.loads((run / "curves.json").read_text())) == {"test", "val"}
    again = score_run("t", run, metrics, scorers)  # cached: no checkpoint needed
    assert again["test"].acc == test.acc and again["val"].steps == [0, 1, 2]


def test_other_splits_are_scored_at_the_first_and_last_weights_only(toy_assets, tmp_path):
    a = toy_assets
    run = tmp_path / "run"
    for step in (1, 2, 3):
        save_checkpoint(run, step, a.student_dir if step < 3 else a.teacher_dir)
    metrics = {s: {"timing_s/step": 1.0} for s in (1, 2, 3)}
    curves = score_run("t", run, metrics, {"test": TOY.scorer(a, a.test_file), "val": TOY.scorer(a, a.val_file)},
                       keep_checkpoints=True)
    assert curves["test"].steps == [0, 1, 2, 3] and curves["val"].steps == [0, 3] and curves["val"].wall == [0.0, 3.0]
    assert curves["val"].acc[0] < curves["val"].acc[1]
    assert (run / "checkpoints" / "global_step_3").exists()


def test_a_checkpoint_of_another_model_is_refused(toy_assets, tmp_path):
    scorer = TOY.scorer(toy_assets, toy_assets.test_file)
    with pytest.raises(RuntimeError, match="does not fit the toy model"):
        scorer.load({"transformer.h.0.weight": torch.zeros(2)})
