"""scripts/bench_acceptance_noise.py's command line: the plot redrawn from the recorded JSON, and the usage errors.
(Measuring runs needs finished trainer runs with checkpoints: ``effopd_verl.bench.noise`` is tested in tests/bench.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from script_module import load_script

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "docs" / "results" / "acceptance_noise.json"
noise_script = load_script("bench_acceptance_noise")


def test_replot_draws_the_png_from_the_recorded_json(tmp_path):
    png = tmp_path / "noise.png"
    assert noise_script.main(["--replot", str(RECORDED), "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["--replot", str(RECORDED)], "--replot needs --png"),
    (["--run", "reward=x"], "--assets"),
    (["--assets", "toy"], "give at least one --run"),
    (["--assets", "toy", "--run", "loss=x"], "expected SCORE=DIR"),
])
def test_usage_errors_name_what_is_missing(argv, message, capsys):
    with pytest.raises(SystemExit):
        noise_script.parse_args(argv)
    assert message in capsys.readouterr().err
