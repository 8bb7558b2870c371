"""effopd-report: metric patterns, reference lines, tables, run names."""

import json

import pytest

from effopd_verl.cli.report import HLine, find_logs, main, read_runs, select_metrics


def write_log(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for step, data in rows:
            f.write(json.dumps({"step": step, "data": data}) + "\n")


ROWS = [
    (0, {"val-core/toy_add/reward/mean@1": 0.15, "val-aux/toy_add/reward/std@1": 0.3}),
    (1, {"timing_s/step": 2.0, "actor/distillation/loss": 0.9}),
    (2, {"timing_s/step": 3.0, "actor/distillation/loss": 0.7, "val-core/toy_add/reward/mean@1": 0.4}),
]


def test_patterns_pick_logged_metrics_in_order():
    available = {"val-core/a/reward/mean@1", "val-core/b/reward/mean@1", "actor/distillation/loss"}
    assert select_metrics(["val-core/*/reward/mean@1", "actor/distillation/loss"], available) == (
        ["val-core/a/reward/mean@1", "val-core/b/reward/mean@1", "actor/distillation/loss"], [])
    assert select_metrics(["nope/*"], available) == ([], ["nope/*"])


def test_hline_parsing():
    assert HLine.parse("teacher=0.99") == HLine("teacher", 0.99, "val-core/*")
    h = HLine.parse("actor/*:floor=0.1")
    assert (h.label, h.value, h.pattern) == ("floor", 0.1, "actor/*")
    assert h.applies_to("actor/distillation/loss") and not h.applies_to("val-core/x")
    for bad in ("teacher", "=1", "teacher=high"):
        with pytest.raises(SystemExit, match="expected LABEL=VALUE"):
            HLine.parse(bad)


def test_runs_named_after_their_folder_when_files_are_metrics_jsonl(tmp_path):
    write_log(tmp_path / "lr1e-4" / "metrics.jsonl", ROWS)
    write_log(tmp_path / "lr3e-4" / "metrics.jsonl", ROWS)
    write_log(tmp_path / "effopd.jsonl", ROWS)
    runs = read_runs([tmp_path / "lr1e-4" / "metrics.jsonl", tmp_path / "lr3e-4" / "metrics.jsonl", tmp_path / "effopd.jsonl"])
    assert [r.name for r in runs] == ["lr1e-4", "lr3e-4", "effopd"]


def test_table_and_plot_from_patterns(tmp_path, capsys):
    write_log(tmp_path / "run" / "metrics.jsonl", ROWS)
    out, md, js = tmp_path / "c.png", tmp_path / "t.md", tmp_path / "t.json"
    args = [str(tmp_path / "run"), "--metric", "val-core/*/reward/mean@1", "--metric", "actor/distillation/loss",
            "--hline", "teacher=0.99", "--out", str(out)]
    main(args + ["--table", str(md)])
    main(args + ["--table", str(js), "--title", "vanilla OPD"])
    assert out.stat().st_size > 10_000
    table = json.loads(js.read_text())
    assert table["metrics"] == ["val-core/toy_add/reward/mean@1", "actor/distillation/loss"]
    assert table["runs"]["run"] == [
        {"step": 0, "wall_s": 0.0, "val-core/toy_add/reward/mean@1": 0.15, "actor/distillation/loss": None},
        {"step": 1, "wall_s": 2.0, "val-core/toy_add/reward/mean@1": None, "actor/distillation/loss": 0.9},
        {"step": 2, "wall_s": 5.0, "val-core/toy_add/reward/mean@1": 0.4, "actor/distillation/loss": 0.7},
    ]
    lines = md.read_text().splitlines()
    assert lines[0] == "**run**"
    assert lines[2] == "| step | wall (s) | val-core/toy_add/reward/mean@1 | actor/distillation/loss |"
    assert lines[4] == "| 0 | 0 | 0.15 |  |" and lines[6] == "| 2 | 5 | 0.4 | 0.7 |"
    with pytest.raises(SystemExit, match=r"metric\(s\) \['val/\*'\] not logged"):
        main([str(tmp_path / "run"), "--metric", "val/*", "--out", str(out)])


def test_console_output_and_run_directories(tmp_path):
    """verl's console logger lines (with Ray's prefix and colours) read like the file logger's; a run directory
    gives its file-logger logs and skips other .jsonl files (rollout dumps), else its console .log files."""
    console = tmp_path / "console_run" / "train.log"
    console.parent.mkdir()
    console.write_text(
        "\x1b[36m(TaskRunner pid=1)\x1b[0m step:0 - val-core/toy_add/reward/mean@1:0.15\n"
        "some other line: 3\n"
        "\x1b[36m(TaskRunner pid=1)\x1b[0m step:1 - timing_s/step:2.0 - actor/distillation/loss:0.9 - effopd/accepted_alpha:4\n"
        "step:2 - timing_s/step:3.0 - actor/distillation/loss:0.7 - val-core/toy_add/reward/mean@1:np.float64(0.4) - turns:np.int64(2) - note:abc\n"
    )
    (run,) = read_runs(find_logs([str(console.parent)]))
    assert run.steps == [0, 1, 2]
    assert run.series("val-core/toy_add/reward/mean@1") == ([0, 2], [0.0, 5.0], [0.15, 0.4])
    assert run.series("effopd/accepted_alpha") == ([1], [2.0], [4.0])
    assert run.series("turns") == ([2], [5.0], [2.0])
    assert "note" not in run.metrics()

    file_run = tmp_path / "file_run"
    write_log(file_run / "metrics.jsonl", ROWS)
    (file_run / "rollouts").mkdir()
    (file_run / "rollouts" / "1.jsonl").write_text(json.dumps({"input": "q", "output": "a", "score": 1.0}) + "\n")
    (file_run / "train.log").write_text(console.read_text())
    assert find_logs([str(file_run)]) == [file_run / "metrics.jsonl"]
