"""scripts/gpu_check.py run for real on CPU (--allow-cpu --quick): every section passes and the JSON
has the promised structure; without CUDA and without --allow-cpu it stops with exit status 2; a
section that raises is recorded and the others still run; its accuracy checks reject wrong math."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch
from script_module import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
SECTIONS = ["extrapolation", "extrapolation_bandwidth", "fsdp2", "teacher_logprob"]
NO_GPU = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


# The GPU machine has PyTorch only: the script runs here with these packages made unimportable.
ONLY_TORCH = f"""
import importlib.abc, runpy, sys
class OnlyTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {{"verl", "ray", "vllm", "transformers", "hydra", "omegaconf", "safetensors"}}:
            raise ImportError(f"{{name}} is not on the GPU machine")
sys.meta_path.insert(0, OnlyTorch())
runpy.run_path({str(SCRIPT)!r}, run_name="__main__")
"""


def test_quick_cpu_run_passes_every_section(tmp_path):
    out = tmp_path / "check.json"
    run = subprocess.run([sys.executable, "-c", ONLY_TORCH, "--json", str(out), "--allow-cpu", "--quick"],
                         capture_output=True, text=True, env=NO_GPU, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(out.read_text())
    assert report["passed"] is True and report["total_s"] > 0
    assert report["command"].startswith("scripts/gpu_check.py --json")
    env = report["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["device_name"]
    assert "cuda" in env
    assert report["sizes"]["lp_vocab"] == 1000
    assert list(report["sections"]) == SECTIONS
    for name, section in report["sections"].items():
        assert section["passed"] is True and section["error"] is None, (name, section)
        assert section["checks"] and all(section["checks"].values()), name
        assert section["seconds"] >= 0 and isinstance(section["numbers"], dict)
    combos = {f"{dtype}_anchor_{where}" for dtype in ("bfloat16", "float32") for where in ("same", "cpu")}
    extrap = report["sections"]["extrapolation"]["numbers"]
    assert set(extrap) == combos
    for row in extrap.values():
        assert set(row["alphas"]) == {"0.5", "2.0", "6.0"}
        assert all(0 <= a["max_error_over_bound"] <= 1 for a in row["alphas"].values())
        assert 0 <= row["squared_norm_rel_error"] <= 1e-3
    bandwidth = report["sections"]["extrapolation_bandwidth"]["numbers"]
    assert set(bandwidth) == combos | {"goal"}
    assert all(math.isfinite(bandwidth[c]["bandwidth_ratio"]) and bandwidth[c]["apply_s"] > 0 for c in combos)
    fsdp2 = report["sections"]["fsdp2"]["numbers"]
    assert fsdp2["backend"] == "gloo" and fsdp2["world_size"] == 1 and fsdp2["selected"] > 0
    logprob = report["sections"]["teacher_logprob"]["numbers"]
    assert logprob["chunks"] > 1  # the chunked path is really taken
    assert 0 < logprob["chunked_max_abs_error"] and logprob["max_error_over_bound"] <= 1
    assert "PASS" in run.stdout and f"wrote {out}" in run.stdout


def test_without_cuda_it_stops_with_status_2(tmp_path):
    out = tmp_path / "check.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], capture_output=True, text=True,
                         env=NO_GPU, timeout=120)
    assert run.returncode == 2
    assert "no CUDA device" in run.stderr and "--allow-cpu" in run.stderr
    assert not out.exists()


def test_a_failing_section_is_recorded_and_the_next_one_runs(tmp_path, monkeypatch):
    gpu_check = load_script("gpu_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this test is about the CPU path

    def broken(ctx, checks):
        checks.expect("reached", True)
        raise RuntimeError("section exploded")

    monkeypatch.setitem(gpu_check.SECTIONS, "broken", broken)
    out = tmp_path / "check.json"
    status = gpu_check.main(["--json", str(out), "--allow-cpu", "--quick", "--only", "broken", "--only", "teacher_logprob"])
    assert status == 1
    report = json.loads(out.read_text())
    assert report["passed"] is False
    assert report["sections"]["broken"]["passed"] is False
    assert "RuntimeError: section exploded" in report["sections"]["broken"]["error"]
    assert report["sections"]["teacher_logprob"]["passed"] is True


def test_the_extrapolation_accuracy_check_rejects_math_in_bf16():
    gpu_check = load_script("gpu_check")
    gen = torch.Generator().manual_seed(0)
    anchor = (0.02 * torch.randn(4096, generator=gen)).bfloat16()
    theta_t = (anchor.float() + 1e-3 * torch.randn(4096, generator=gen)).bfloat16()
    for alpha in (0.5, 2.0, 6.0):
        fp32_math = torch.add(theta_t.float(), theta_t.float() - anchor.float(), alpha=alpha).bfloat16()
        bf16_math = torch.add(theta_t, theta_t - anchor, alpha=alpha)
        assert gpu_check.rounding_report(fp32_math, theta_t, anchor.float(), alpha)["within_bound"]
        assert not gpu_check.rounding_report(bf16_math, theta_t, anchor.float(), alpha)["within_bound"]


def test_the_logprob_bound_rejects_a_bf16_reduction():
    gpu_check = load_script("gpu_check")
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(64, 256, generator=gen).bfloat16()
    weight = (0.05 * torch.randn(2000, 256, generator=gen)).bfloat16()
    targets = torch.randint(0, 2000, (64,), generator=gen)
    reference, bound = gpu_check.fp64_reference(hidden, weight, targets)
    z = torch.nn.functional.linear(hidden, weight)
    fp32_reduction = z.float().gather(-1, targets[:, None])[:, 0] - torch.logsumexp(z.float(), -1)
    bf16_reduction = (z.gather(-1, targets[:, None])[:, 0] - torch.logsumexp(z, -1)).float()
    assert ((fp32_reduction.double() - reference).abs() <= bound).all()
    assert not ((bf16_reduction.double() - reference).abs() <= bound).all()


def test_bitwise_equal_sees_what_torch_equal_does_not():
    gpu_check = load_script("gpu_check")
    assert torch.equal(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert not gpu_check.bitwise_equal(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert gpu_check.bitwise_equal(torch.tensor([float("nan")]), torch.tensor([float("nan")]))
    assert not gpu_check.bitwise_equal(torch.ones(2, dtype=torch.bfloat16), torch.ones(2))
