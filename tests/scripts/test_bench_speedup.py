"""scripts/bench_speedup.py, the command line over effopd_verl.bench: its help, a dry run, bad arguments,
and a whole benchmark over finished runs (the cached path: run folders whose DONE matches the command the
script builds, holding real checkpoints, the quick toy's initial student and its teacher, so the scores are
known). The effopd-train runs themselves are the slow e2e tests' job; the figures are tested in tests/bench/."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from script_module import load_script
from transformers import Qwen3ForCausalLM

from effopd_verl.bench.arms import parse_arm
from effopd_verl.bench.measures import LOSS
from effopd_verl.bench.runs import RunSettings, run_key, train_command, work_folder
from effopd_verl.bench.toy_testbed import TOY

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_speedup.py"
bench = load_script("bench_speedup")

STEPS, BATCH = 2, 4
SETTINGS = RunSettings(STEPS, BATCH, 128, STEPS)


def test_help():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--lr-factors" in out.stdout and "--arm-override" in out.stdout and "effopd_verl.bench" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["--arms", "effopd_tlp_fast"], "rate 'fast'"),
    (["--lr-factors", "3", "1/0"], "lr factor '1/0'"),
    (["--arms", "effopd_tlp_tuned-e4"], "variant without overrides"),
    (["--testbed", "nope"], "--testbed 'nope'"),
    (["--arms"], "expected at least one argument"),
    (["--steps", "0"], "--steps must be ≥ 1"),
    (["--seeds", "0", "1", "--arm-seeds", "vanilla_tuned=2"], "--arm-seeds 'vanilla_tuned=2'"),
    (["--arm-seeds", "vanilla_x3=0"], "--arm-seeds 'vanilla_x3=0'"),
])
def test_bad_arguments_stop_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        bench.parse_args(["--assets", "nowhere", *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_arms_from_lr_factors_and_the_default_set():
    args = bench.parse_args(["--assets", "x", "--lr-factors", "3", "1", "1/3", "0.1", "--arms", "effopd_tlp_tuned-e4",
                             "--arm-override", "effopd_tlp_tuned-e4=effopd.trigger_every=4"])
    assert [a.name for a in args.arm_set] == ["effopd_tlp_tuned-e4", "vanilla_x3", "effopd_tlp_x3", "vanilla_tuned",
                                              "effopd_tlp_tuned", "vanilla_div3", "effopd_tlp_div3", "vanilla_under",
                                              "effopd_tlp_under"]
    assert bench.arm_lrs(args, 3e-4) == pytest.approx({"tuned": 3e-4, "under": 3e-5, "x3": 9e-4, "div3": 1e-4})
    assert [a.name for a in bench.parse_args(["--assets", "x"]).arm_set] == [
        "vanilla_tuned", "effopd_tlp_tuned", "vanilla_under", "effopd_reward_under", "effopd_tlp_under", "fixed2_under"]


def finished_run(work: Path, assets, arm: str, lr: float, weights: list[str], extra=(), searches=None, loss=None):
    """A run folder as a finished ``effopd-train`` run leaves it: DONE (the hash of the command the benchmark
    builds), verl's metrics log, and one actor checkpoint per step (``weights``: a model folder per step)."""
    a = parse_arm(arm, tuple(extra))
    tag = a.run_tag(lr, 0, None)
    run = work / tag
    for step, model in enumerate(weights, 1):
        actor = run / "checkpoints" / f"global_step_{step}" / "actor"
        actor.mkdir(parents=True)
        torch.save(Qwen3ForCausalLM.from_pretrained(model).state_dict(), actor / "model_world_size_1_rank_0.pt")
    records = [{"step": s, "data": {"timing_s/step": 1.0, LOSS: (loss or {}).get(s, 1.0 / s), **(searches or {}).get(s, {})}}
               for s in range(1, len(weights) + 1)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    (run / "DONE").write_text(run_key(train_command(TOY, assets, SETTINGS, lr, 0, a.hydra_overrides(None))))
    return tag


def test_a_benchmark_over_finished_runs(toy_assets, tmp_path, capsys):
    a, work_root = toy_assets, tmp_path / "work"
    work = work_folder(work_root, TOY, a.task, SETTINGS)
    s, t = a.student_dir, a.teacher_dir
    search = {1: {"effopd/accepted_alpha": 2.0, "effopd/search_seconds": 1.0, "effopd/direction_norm": 0.1,
                  "effopd/score_base": -1.0, "effopd/score_alpha_2": -0.5}}
    # the sweep: 3e-4 improves to the teacher's weights; 1e-3 gets there at step 1 and falls back (unstable)
    finished_run(work, a, "vanilla_tuned", 3e-4, [s, t])
    finished_run(work, a, "vanilla_tuned", 1e-3, [t, s], loss={2: float("nan")})
    finished_run(work, a, "effopd_tlp_tuned", 3e-4, [t, t], searches=search)
    finished_run(work, a, "vanilla_x3", 9e-4, [t, s])  # oscillates: at the target at step 1, then back
    variant = ["effopd.trigger_every=4"]
    finished_run(work, a, "effopd_tlp_x3-e4", 9e-4, [s, t], extra=variant)
    argv = ["--assets", a.out_dir, "--task", "add", "--steps", str(STEPS), "--batch", str(BATCH), "--work", str(work_root),
            "--sweep-lrs", "3e-4", "1e-3", "--arms", "vanilla_tuned", "effopd_tlp_tuned", "effopd_tlp_x3-e4",
            "--lr-factors", "3", "--methods", "vanilla", "--arm-override", f"effopd_tlp_x3-e4={variant[0]}"]
    bench.main([*argv, "--dry-run"])
    plan = capsys.readouterr().out
    assert "tuned lr from the sweep over [0.0003, 0.001]" in plan and "effopd_tlp_x3-e4: lr = 3 × tuned" in plan
    # an arm can run at some of the seeds only
    bench.main([*argv, "--tuned-lr", "3e-4", "--seeds", "0", "1", "--arm-seeds", "effopd_tlp_x3-e4=0", "--dry-run"])
    plan = capsys.readouterr().out
    assert "effopd_tlp_x3-e4 seed 0" in plan and "effopd_tlp_x3-e4 seed 1" not in plan and "effopd_tlp_tuned seed 1" in plan
    bench.main([*argv, "--tuned-lr", "3e-4", "--dry-run"])
    plan = capsys.readouterr().out
    assert plan.count("(cached)") == 4 and f"{work / 'effopd_tlp_x3-e4_lr0.0009_seed0'} (cached)" in plan

    out = tmp_path / "out"
    bench.main([*argv, "--json", str(out / "b.json"), "--md", str(out / "b.md"), "--png", str(out / "b.png")])
    printed = capsys.readouterr().out
    assert "trained in" not in printed and "effopd-train failed" not in printed  # nothing trained: every run was cached
    r = json.loads((out / "b.json").read_text())
    assert r["lr"] == pytest.approx({"tuned": 3e-4, "under": 3e-5, "x3": 9e-4})
    assert r["sweep_val_acc"] == {lr: v["val_acc_final"] for lr, v in r["sweep_stability"].items()}
    assert r["sweep_val_acc"]["0.0003"] > r["sweep_val_acc"]["0.001"]
    assert r["sweep_stability"]["0.0003"]["stable"] and r["sweep_stability"]["0.0003"]["val_points"] == 3
    unstable = r["sweep_stability"]["0.001"]
    assert not unstable["stable"] and not unstable["loss_finite"] and unstable["val_acc_best"] > unstable["val_acc_final"]
    assert list(r["arms"]) == ["vanilla_x3", "effopd_tlp_x3-e4", "vanilla_tuned", "effopd_tlp_tuned"]
    # every historical key is still there
    for key in ("task", "assets", "seeds", "steps", "batch_prompts", "effopd_val_size", "effopd_alphas", "lr", "under_factor",
                "tuned_lr_how", "measure", "gain_definition", "tuned_lr_step_ratio", "tuned_lr_wall_ratio", "arms",
                "curves", "table", "search_table", "bench_seconds"):
        assert key in r, key
    assert r["effopd_defaults"]["alphas"] == [2, 4, 6, 8, 10]  # the effopd: section every run starts from
    # the headline: both vanilla arms gain teacher - student; vanilla_x3 reaches 90% of it at step 1, EffOPD at the
    # tuned lr at step 1 too (ratio 1), but its 1 s search is one more median step (step-equivalents 2: ratio 1/2)
    assert r["effopd_vs_best_vanilla_step_ratio"]["values"] == [1.0]
    assert r["effopd_vs_best_vanilla_stepeq_ratio"]["values"] == [0.5]
    (h,) = r["best_vanilla_headline"]
    assert (h["best_vanilla_steps_arm"], h["best_effopd_steps_arm"]) == ("vanilla_x3", "effopd_tlp_tuned")
    assert h["best_vanilla_final_acc"] == pytest.approx(a.student_accuracy)
    assert r["arms"]["effopd_tlp_x3-e4"]["per_seed"]["0"]["steps_to_90"] == 2  # against vanilla_x3's gain
    assert r["tuned_lr_step_ratio"]["values"] == [2.0]
    page = (out / "b.md").read_text()
    assert "effopd_vs_best_vanilla_step_ratio: mean 1.00" in page and "The lr sweep" in page
    assert f"`effopd_tlp_x3-e4={variant[0]}`" in page and "python scripts/bench_speedup.py --assets" in page
    assert (out / "b.png").stat().st_size > 10_000

    # the run folders of vanilla_x3 and of the EffOPD variant are gone: --curves-from takes their curves from that
    # JSON (not re-run; the variant's by its own overrides), and the headline is the same; the JSON says which curve
    # came from where
    shutil.rmtree(work / "vanilla_lr0.0009_seed0")
    shutil.rmtree(work / "effopd_tlp_x3-e4_lr0.0009_seed0")
    again = ["--tuned-lr", "3e-4", "--curves-from", str(out / "b.json"), "--json", str(out / "c.json")]
    bench.main([*argv, *again, "--dry-run"])
    plan = capsys.readouterr().out
    assert f"{work / 'vanilla_lr0.0009_seed0'} (from {out / 'b.json'})" in plan
    assert f"{work / 'effopd_tlp_x3-e4_lr0.0009_seed0'} (from {out / 'b.json'})" in plan
    # an EffOPD curve serves only the same run: another variant override or another validation size is re-run
    other = [a.replace("trigger_every=4", "trigger_every=2") for a in argv]
    bench.main([*other, *again, "--dry-run"])
    assert f"{work / 'effopd_tlp_x3-e4_lr0.0009_seed0'} (to run)" in capsys.readouterr().out
    bench.main([*argv, *again, "--val-size", "3", "--dry-run"])
    plan = capsys.readouterr().out
    assert f"{work / 'effopd_tlp_x3-e4_lr0.0009_seed0'} (to run)" in plan and f"{work / 'vanilla_lr0.0009_seed0'} (from" in plan
    # ... or other effopd: defaults (the acceptance rule's once changed): those of the earlier JSON are recorded
    stale = {**r, "effopd_defaults": {**r["effopd_defaults"], "min_improvement_se": 0.0}}
    (out / "stale.json").write_text(json.dumps(stale))
    bench.main([*argv, "--tuned-lr", "3e-4", "--curves-from", str(out / "stale.json"), "--dry-run"])
    plan = capsys.readouterr().out
    assert f"{work / 'effopd_tlp_x3-e4_lr0.0009_seed0'} (to run)" in plan and f"{work / 'vanilla_lr0.0009_seed0'} (from" in plan
    bench.main([*argv, *again])
    printed = capsys.readouterr().out
    assert "trained in" not in printed and "its curve is taken from" in printed
    c = json.loads((out / "c.json").read_text())
    assert c["curves_from"] == {"json": str(out / "b.json"), "arms": {"vanilla_x3": [0], "effopd_tlp_x3-e4": [0]}}
    assert c["curves"] == r["curves"] and c["best_vanilla_headline"] == r["best_vanilla_headline"]
    # another setup's JSON is refused before any work
    with pytest.raises(SystemExit, match=r"another setup \(steps: 2 there, 3 here\)"):
        bench.main([*argv, *again, "--steps", "3"])
