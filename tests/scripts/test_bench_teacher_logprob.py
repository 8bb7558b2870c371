"""scripts/bench_teacher_logprob.py at a tiny size: the JSON has every field per length, and the chunked scores
equal the unchunked ones (two fresh processes each)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from script_module import load_script

ROOT = Path(__file__).resolve().parents[2]
bench = load_script("bench_teacher_logprob")


def test_tiny_run_writes_every_field_and_chunked_equals_unchunked(tmp_path, capsys):
    out = tmp_path / "bench.json"
    # 3 positions per chunk over 10 positions: an uneven last chunk
    bench.main(["--lengths", "10", "--vocab", "97", "--hidden", "8", "--chunk-elements", str(3 * 97), "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["rows_per_chunk"] == 3 and result["vocab"] == 97
    row = result["lengths"]["10"]
    assert set(row) == {"tokens", "peak_bytes", "seconds", "unchunked_peak_bytes", "unchunked_seconds", "max_rel_err",
                        "fp32_logits_bytes"}
    assert 0 <= row["max_rel_err"] <= 1e-5
    assert row["peak_bytes"] >= 0 and row["unchunked_peak_bytes"] >= 0 and row["fp32_logits_bytes"] == 10 * 97 * 4
    assert "max rel err" in capsys.readouterr().out


def test_max_rel_err():
    assert bench.max_rel_err(torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -2.5])) == pytest.approx(0.2)
    assert bench.max_rel_err(torch.tensor([]), torch.tensor([])) == 0.0


def test_the_unchunked_way_is_log_softmax_of_the_whole_logits():
    hidden, weight, targets = bench.inputs(5, bench.argparse.Namespace(hidden=4, vocab=11, dtype="float32"))
    want = (hidden.double() @ weight.double().T).log_softmax(-1)[torch.arange(5), targets]
    torch.testing.assert_close(bench.unchunked(hidden, weight, targets).double(), want, rtol=1e-5, atol=0)
