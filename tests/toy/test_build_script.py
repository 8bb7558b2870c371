"""scripts/build_toy_assets.py: a thin CLI over build_assets."""

import subprocess
import sys
from pathlib import Path

from effopd_verl.toy.tasks import task_names

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_toy_assets.py"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_list_tasks_prints_one_name_per_line():
    out = _run("--list-tasks")
    assert out.returncode == 0 and out.stdout.splitlines() == task_names()


def test_it_reports_the_accuracies_of_a_build(toy_assets):
    out = _run(toy_assets.out_dir, "--task", "add", "--seed", "0", "--quick")
    assert out.returncode == 0, out.stderr
    assert "(reused)" in out.stdout
    assert f"teacher test accuracy {toy_assets.teacher_accuracy:.3f}" in out.stdout
    assert f"student test accuracy {toy_assets.student_accuracy:.3f}" in out.stdout


def test_unknown_task_and_missing_folder_are_usage_errors():
    assert _run("/tmp/x", "--task", "nope").returncode == 2
    assert _run().returncode == 2
