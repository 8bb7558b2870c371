import json

import pytest

from effopd_verl.cli.report import RunLog, main


def write_log(path, rows):
    with open(path, "w") as f:
        for step, data in rows:
            f.write(json.dumps({"step": step, "data": data}) + "\n")


def test_report_plots_logged_runs_and_lists_searches(tmp_path, capsys):
    write_log(tmp_path / "effopd.jsonl", [
        (1, {"timing_s/step": 2.0, "effopd/accepted_alpha": 4.0, "effopd/score_best": -1.0}),
        (1, {"val-core/toy/acc/mean@1": 0.2}),  # a second line for the same step merges
        (2, {"timing_s/step": 3.0, "effopd/accepted_alpha": 0.0, "effopd/score_best": -0.8, "val-core/toy/acc/mean@1": 0.4}),
        (3, {"timing_s/step": 1.0, "val-core/toy/acc/mean@1": 0.5, "note": "text is skipped"}),
    ])
    run = RunLog.read(tmp_path / "effopd.jsonl")
    assert run.series("val-core/toy/acc/mean@1") == ([1, 2, 3], [2.0, 5.0, 6.0], [0.2, 0.4, 0.5])
    out = tmp_path / "plots" / "report.png"
    main([str(tmp_path), "--out", str(out)])
    assert out.stat().st_size > 10_000
    printed = capsys.readouterr().out
    assert "effopd: 3 steps; searches t=1: α=4, t=2: α=0" in printed


def test_report_errors_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        main([str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="no logs under"):
        main([str(tmp_path)])
    write_log(tmp_path / "a.jsonl", [(1, {"x": 1.0})])
    with pytest.raises(SystemExit, match=r"metric\(s\) \['y'\] not logged"):
        main([str(tmp_path), "--metric", "y"])
    (tmp_path / "bad.jsonl").write_text("{not json}\n")
    with pytest.raises(ValueError, match="bad.jsonl:1 is not a verl file-logger line"):
        RunLog.read(tmp_path / "bad.jsonl")
