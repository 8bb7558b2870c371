#!/usr/bin/env python
"""GPU check of the core on one accelerator: needs only PyTorch (no verl, Ray, vLLM or network).

Run from the repository root (the script puts it on ``sys.path``)::

    python scripts/gpu_check.py --json runs/gpu_check.json            # one CUDA GPU, ~1-3 min
    python scripts/gpu_check.py --json /tmp/g.json --allow-cpu --quick   # CPU, small sizes (CI)

Sections (each records ``passed``, its checks, numbers and, if it raised, the error; a failing
section does not stop the next one; the exit status is 1 if any failed, 2 without CUDA unless
``--allow-cpu``):

``extrapolation``
    :class:`effopd_verl.core.extrapolation.ShardedExtrapolation` on bf16 and fp32 tensors (~1 GiB
    per dtype by default), anchors on the device and on the host. Checks: ``restore`` gives θ_t back
    bit for bit; every candidate θ(α) = θ_t + α·(θ_t − θ_anchor) equals the exact value (fp64, from
    θ_t and the fp32 anchor) within the rounding of fp32 math plus one rounding to the shard dtype,
    |θ̂ − θ| ≤ u_dtype·|θ| + u_fp32·(|θ| + 3·|α·d|) (u: unit roundoff); an overflowing α reports a
    non-finite candidate; ``commit`` writes the candidate and makes it the anchor.
``extrapolation_bandwidth``
    Median time of ``apply`` (one candidate) against a device-to-device copy of the parameter bytes
    (what ``restore`` does). ``bandwidth_ratio`` = (bytes a candidate must move: read θ_t and the
    fp32 anchor, write the parameter) / apply time, over (2 × parameter bytes) / copy time. Goal on
    CUDA with anchors on the device: ≥ 0.7. Host anchors (``effopd.anchor_device=cpu``, the
    default) are timed too, against a pinned host-to-device copy of θ_t and the anchor.
``fsdp2``
    A one-rank process group (NCCL on CUDA, gloo on CPU), a small transformer under ``fully_shard``;
    snapshot, apply, forward, restore, commit and one more optimizer step through
    ``ShardedExtrapolation`` on its DTensor parameters, compared with an unsharded twin.
``teacher_logprob``
    The chunked teacher log-probability of :mod:`effopd_verl.core.token_logprob` in bf16 on a
    Qwen3-1.7B-shaped head (hidden 2048, vocabulary 151,936) against an fp64 reference, with its peak
    memory (``torch.cuda.max_memory_allocated``) against the unchunked computation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.distributed.tensor import DTensor  # noqa: E402

from effopd_verl.core.config import EffOPDConfig  # noqa: E402
from effopd_verl.core.extrapolation import ShardedExtrapolation  # noqa: E402

ALPHAS = (0.5, 2.0, 6.0)
#: ‖d‖² from ``snapshot`` (an fp32 reduction, a diagnostic) against fp64. On CPU,
#: torch.linalg.vector_norm in fp32 is off by ~2e-4 at 1M elements and ~1e-3 at 4M.
NORM_RTOL = 1e-3
BANDWIDTH_GOAL = 0.7
MIB = 2**20


@dataclass(frozen=True)
class Sizes:
    """Problem sizes; ``--quick`` shrinks every one of them."""

    extrap_bytes: int
    """Bytes of parameters per dtype in the extrapolation sections."""

    extrap_tensors: int
    """How many equal tensors hold them (plus one small odd-shaped tensor)."""

    repeats: int
    """Timed repetitions (after two warm-up runs); the median is reported."""

    fsdp_hidden: int
    """Hidden width of the FSDP2 model."""

    fsdp_layers: int
    """Transformer blocks of the FSDP2 model."""

    fsdp_vocab: int
    """Vocabulary of the FSDP2 model."""

    lp_hidden: int
    """Hidden width of the teacher head (Qwen3-1.7B: 2048)."""

    lp_vocab: int
    """Vocabulary of the teacher head (Qwen3: 151,936)."""

    lp_tokens: int
    """Tokens scored at once in the teacher-logprob section."""

    lp_chunk_elements: int | None
    """Logits per chunk of ``token_logprobs``; None: the module's default."""

    @classmethod
    def full(cls, extrap_mib: int) -> "Sizes":
        return cls(extrap_mib * MIB, 4, 7, 512, 2, 1024, 2048, 151_936, 8192, None)

    @classmethod
    def quick(cls) -> "Sizes":
        return cls(256 * 1024, 2, 3, 32, 2, 64, 64, 1000, 96, 16_000)


class Checks:
    """Named boolean checks of one section; the section passes when all of them hold."""

    def __init__(self) -> None:
        self.results: dict[str, bool] = {}

    def expect(self, name: str, ok: bool) -> bool:
        self.results[name] = bool(ok) and self.results.get(name, True)
        return bool(ok)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(self.results.values())


@dataclass
class Context:
    device: torch.device
    sizes: Sizes

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


# ------------------------------------------------------------------------------------------- helpers


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bits (NaN payloads and signed zeros included)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.contiguous().view(as_int), b.contiguous().view(as_int))


def median_seconds(ctx: Context, fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` (CUDA events on a GPU, perf_counter on CPU)."""
    for _ in range(warmup):
        fn()
    ctx.sync()
    times = []
    for _ in range(repeats):
        if ctx.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_parameters(ctx: Context, dtype: torch.dtype, seed: int) -> list[tuple[str, nn.Parameter]]:
    """``extrap_bytes`` of ``dtype`` in ``extrap_tensors`` equal tensors plus a small odd-shaped one."""
    gen = torch.Generator(device=ctx.device).manual_seed(seed)
    per_tensor = ctx.sizes.extrap_bytes // ctx.sizes.extrap_tensors // (torch.finfo(dtype).bits // 8)
    cols = 4096 if per_tensor >= 4096 * 16 else 64
    shapes = [(per_tensor // cols, cols)] * ctx.sizes.extrap_tensors + [(37, 61)]
    return [(f"layers.{i}.mlp.proj.weight", nn.Parameter(0.02 * torch.randn(shape, generator=gen, device=ctx.device).to(dtype)))
            for i, shape in enumerate(shapes)]


@torch.no_grad()
def training_step(named: list[tuple[str, nn.Parameter]], seed: int, scale: float = 1e-3) -> None:
    """Stand-in for an optimizer update: θ += scale·noise, in the parameter dtype."""
    for i, (_, p) in enumerate(named):
        gen = torch.Generator(device=p.device).manual_seed(seed * 1000 + i)
        p.add_(scale * torch.randn(p.shape, generator=gen, device=p.device).to(p.dtype))


def rounding_report(candidate: torch.Tensor, theta_t: torch.Tensor, anchor: torch.Tensor, alpha: float) -> dict:
    """The candidate against the exact θ_t + α·(θ_t − θ_anchor) (fp64), see the module doc's bound."""
    u_dtype = torch.finfo(candidate.dtype).eps / 2
    u32 = torch.finfo(torch.float32).eps / 2
    t64, a64 = theta_t.double(), anchor.double()
    step = alpha * (t64 - a64)
    exact = t64 + step
    err = (candidate.double() - exact).abs()
    bound = u_dtype * exact.abs() + u32 * (exact.abs() + 3 * step.abs()) + torch.finfo(candidate.dtype).tiny
    return {
        "within_bound": bool((err <= bound).all()),
        "max_error_over_bound": float((err / bound).max()),
        "fraction_equal_to_exact_rounded": float((candidate == exact.to(candidate.dtype)).double().mean()),
    }


def env_info(device: torch.device) -> dict:
    info = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device_name=props.name,
            capability=f"{props.major}.{props.minor}",
            device_memory_gib=round(props.total_memory / 2**30, 1),
            cudnn=torch.backends.cudnn.version(),
            bf16_reduced_precision_reduction=torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            nccl=".".join(map(str, torch.cuda.nccl.version())) if hasattr(torch.cuda, "nccl") else None,
        )
    else:
        info["device_name"] = platform.processor() or platform.machine()
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                            timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


# ------------------------------------------------------------------------------------------- extrapolation


def section_extrapolation(ctx: Context, checks: Checks) -> dict:
    numbers: dict = {}
    for dtype in (torch.bfloat16, torch.float32):
        for anchor_device in ("same", "cpu"):
            key = f"{str(dtype).removeprefix('torch.')}_anchor_{anchor_device}"
            named = make_parameters(ctx, dtype, seed=1)
            anchor = {n: p.detach().float().clone() for n, p in named}
            ex = ShardedExtrapolation(selects=lambda name: True, anchor_device=anchor_device)
            ex.set_anchor(named)
            training_step(named, seed=2)
            theta_t = {n: p.detach().clone() for n, p in named}
            norms = ex.snapshot(named).squared_norms
            expected_sq = sum(float((theta_t[n].double() - anchor[n].double()).square().sum()) for n in theta_t)
            norm_error = abs(sum(norms.values()) / expected_sq - 1)
            checks.expect(f"{key}: snapshot ‖d‖² = fp64 ‖θ_t − θ_anchor‖² (rel {NORM_RTOL})", norm_error <= NORM_RTOL)
            per_alpha: dict = {}
            for alpha in ALPHAS:
                finite = ex.apply(alpha, named)
                reports = [rounding_report(p.detach(), theta_t[n], anchor[n], alpha) for n, p in named]
                per_alpha[str(alpha)] = {
                    "max_error_over_bound": max(r["max_error_over_bound"] for r in reports),
                    "fraction_equal_to_exact_rounded": min(r["fraction_equal_to_exact_rounded"] for r in reports),
                }
                checks.expect(f"{key}: apply(α) finite", finite)
                checks.expect(f"{key}: candidate = fp64 reference within the {dtype} rounding",
                              all(r["within_bound"] for r in reports))
                ex.restore(named)
                checks.expect(f"{key}: restore bitwise (torch.equal)",
                              all(bitwise_equal(p.detach(), theta_t[n]) and torch.equal(p, theta_t[n]) for n, p in named))
            numbers[key] = {"squared_norm_rel_error": norm_error, "alphas": per_alpha}
            checks.expect(f"{key}: an overflowing candidate is reported as non-finite",
                          overflow_is_reported(ctx, dtype, anchor_device))
            ex.apply(ALPHAS[1], named)
            candidate = {n: p.detach().clone() for n, p in named}
            ex.commit(ALPHAS[1], named)
            checks.expect(f"{key}: commit writes the candidate bitwise",
                          all(bitwise_equal(p.detach(), candidate[n]) for n, p in named))
            after = ex.snapshot(named).squared_norms  # no step since the commit: d = 0
            checks.expect(f"{key}: the committed point is the new anchor (‖d‖ = 0)", all(v == 0 for v in after.values()))
            del named, anchor, theta_t, candidate, ex
            if ctx.cuda:
                torch.cuda.empty_cache()
    return numbers


def overflow_is_reported(ctx: Context, dtype: torch.dtype, anchor_device: str) -> bool:
    """θ_anchor = 0, θ_t = (0, 1, −2, 3): α = 3e38 overflows the last three elements; α = 2 does not."""
    named = [("probe.proj.weight", nn.Parameter(torch.zeros(4, dtype=dtype, device=ctx.device)))]
    ex = ShardedExtrapolation(selects=lambda name: True, anchor_device=anchor_device)
    ex.set_anchor(named)
    with torch.no_grad():
        named[0][1].copy_(torch.tensor([0.0, 1.0, -2.0, 3.0]))
    theta_t = named[0][1].detach().clone()
    ex.snapshot(named)
    overflow_reported = not ex.apply(3e38, named)
    ex.restore(named)
    restored = bitwise_equal(named[0][1].detach(), theta_t)
    return overflow_reported and restored and ex.apply(2.0, named)


def section_extrapolation_bandwidth(ctx: Context, checks: Checks) -> dict:
    numbers: dict = {"goal": f"bandwidth_ratio >= {BANDWIDTH_GOAL} with anchors on the device (CUDA only)"}
    for dtype in (torch.bfloat16, torch.float32):
        for anchor_device in ("same", "cpu"):
            key = f"{str(dtype).removeprefix('torch.')}_anchor_{anchor_device}"
            named = make_parameters(ctx, dtype, seed=3)
            ex = ShardedExtrapolation(selects=lambda name: True, anchor_device=anchor_device, direction_sample=False)
            ex.set_anchor(named)
            training_step(named, seed=4)
            ex.snapshot(named)
            params = [p.detach() for _, p in named]
            source = [p.clone() for p in params]
            param_bytes = sum(p.numel() * p.element_size() for p in params)
            apply_bytes = param_bytes * 2 + sum(p.numel() * 4 for p in params)  # read θ_t, read fp32 anchor, write θ
            apply_s = median_seconds(ctx, lambda: ex.apply(ALPHAS[1], named), ctx.sizes.repeats)
            restore_s = median_seconds(ctx, lambda: ex.restore(named), ctx.sizes.repeats)

            def device_copy():
                for dst, src in zip(params, source):
                    dst.copy_(src)

            copy_s = median_seconds(ctx, device_copy, ctx.sizes.repeats)
            row = {
                "parameter_bytes": param_bytes,
                "apply_s": apply_s,
                "restore_s": restore_s,
                "device_copy_s": copy_s,
                "apply_GBps": apply_bytes / apply_s / 1e9,
                "device_copy_GBps": 2 * param_bytes / copy_s / 1e9,
                "bandwidth_ratio": (apply_bytes / apply_s) / (2 * param_bytes / copy_s),
                "copy_over_apply_time": copy_s / apply_s,
            }
            if anchor_device == "cpu" and ctx.cuda:  # what a candidate must bring over: θ_t and the fp32 anchor
                host = [torch.empty(p.shape, dtype=p.dtype, pin_memory=True) for p in params]
                host += [torch.empty(p.shape, dtype=torch.float32, pin_memory=True) for p in params]
                dev = [torch.empty_like(h, device=ctx.device) for h in host]

                def host_to_device():
                    for d, h in zip(dev, host):
                        d.copy_(h, non_blocking=True)

                h2d_s = median_seconds(ctx, host_to_device, ctx.sizes.repeats)
                h2d_bytes = sum(h.numel() * h.element_size() for h in host)
                row.update(host_to_device_copy_s=h2d_s, host_to_device_GBps=h2d_bytes / h2d_s / 1e9,
                           apply_over_host_to_device_time=apply_s / h2d_s)
                del host, dev
            numbers[key] = row
            if anchor_device == "same" and ctx.cuda:
                checks.expect(f"{key}: bandwidth_ratio >= {BANDWIDTH_GOAL}", row["bandwidth_ratio"] >= BANDWIDTH_GOAL)
            checks.expect(f"{key}: timed (finite, positive)", all(v > 0 and math.isfinite(v) for v in (apply_s, restore_s, copy_s)))
            del named, params, source, ex
            if ctx.cuda:
                torch.cuda.empty_cache()
    return numbers


# ------------------------------------------------------------------------------------------- FSDP2


class Block(nn.Module):
    """Pre-norm causal self-attention and MLP, with Qwen-style parameter names."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.input_layernorm = nn.LayerNorm(hidden)
        self.self_attn = nn.ModuleDict({name: nn.Linear(hidden, hidden, bias=name != "o_proj")
                                        for name in ("q_proj", "k_proj", "v_proj", "o_proj")})
        self.post_attention_layernorm = nn.LayerNorm(hidden)
        self.mlp = nn.ModuleDict({"up_proj": nn.Linear(hidden, 4 * hidden), "down_proj": nn.Linear(4 * hidden, hidden)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        y = self.input_layernorm(x)
        q, k, v = (self.self_attn[n](y).view(b, s, self.heads, -1).transpose(1, 2) for n in ("q_proj", "k_proj", "v_proj"))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, h)
        x = x + self.self_attn["o_proj"](attn)
        return x + self.mlp["down_proj"](F.gelu(self.mlp["up_proj"](self.post_attention_layernorm(x))))


class TinyLM(nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList(Block(hidden, heads=max(1, hidden // 32)) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def section_fsdp2(ctx: Context, checks: Checks) -> dict:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    backend = "nccl" if ctx.cuda else "gloo"
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    kwargs = {"device_id": ctx.device} if ctx.cuda else {}
    dist.init_process_group(backend, rank=0, world_size=1, timeout=timedelta(seconds=120), **kwargs)
    try:
        return _fsdp2_checks(ctx, checks, backend, init_device_mesh, fully_shard)
    finally:
        dist.destroy_process_group()


def _fsdp2_checks(ctx: Context, checks: Checks, backend: str, init_device_mesh, fully_shard) -> dict:
    s, alpha = ctx.sizes, 4.0
    mesh = init_device_mesh(ctx.device.type, (1,))

    def build() -> TinyLM:
        torch.manual_seed(0)
        return TinyLM(s.fsdp_vocab, s.fsdp_hidden, s.fsdp_layers).to(ctx.device)

    model, reference = build(), build()
    for layer in model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ref_optimizer = torch.optim.Adam(reference.parameters(), lr=1e-2)

    def batch(seed: int) -> torch.Tensor:
        return torch.randint(0, s.fsdp_vocab, (4, 32), generator=torch.Generator().manual_seed(seed)).to(ctx.device)

    def step(m, opt, seed: int) -> None:
        ids = batch(seed)
        logits = m(ids[:, :-1])
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1)).backward()
        opt.step()
        opt.zero_grad()

    def full() -> dict[str, torch.Tensor]:
        return {n: p.full_tensor().detach().clone() for n, p in model.named_parameters()}

    def total_sq(norms: dict[str, float]) -> float:
        t = torch.tensor(sum(norms.values()), dtype=torch.float64, device=ctx.device)
        dist.all_reduce(t)
        return float(t)

    config = EffOPDConfig()
    selects = config.selects
    ex = ShardedExtrapolation(selects, anchor_device=config.anchor_device)
    ex.set_anchor(model.named_parameters())
    checks.expect("parameters are DTensors", all(isinstance(p, DTensor) for p in model.parameters()))
    theta_0 = full()
    step(model, optimizer, 1)
    step(reference, ref_optimizer, 1)
    theta_t = full()
    sq = total_sq(ex.snapshot(model.named_parameters()).squared_norms)
    expected_sq = sum(float((theta_t[n] - theta_0[n]).double().square().sum()) for n in ex.matched_names)
    norm_error = abs(sq / expected_sq - 1)
    checks.expect(f"snapshot ‖d‖² = fp64 full-tensor ‖θ_t − θ_0‖² (rel {NORM_RTOL})", norm_error <= NORM_RTOL)

    checks.expect("apply finite", ex.apply(alpha, model.named_parameters()))
    candidate = full()
    checks.expect("candidate = θ_t + α·d on full tensors, bitwise", all(
        torch.equal(v, torch.add(theta_t[n], theta_t[n] - theta_0[n], alpha=alpha) if selects(n) else theta_t[n])
        for n, v in candidate.items()))
    with torch.no_grad():
        reference.load_state_dict(candidate)
        ids = batch(7)
        gap = float((model(ids) - reference(ids)).abs().max())
    checks.expect("the forward pass sees the candidate (max |Δlogit| <= 1e-4)", gap <= 1e-4)
    model.reshard()

    ex.restore(model.named_parameters())
    checks.expect("restore bitwise", all(bitwise_equal(v, theta_t[n]) for n, v in full().items()))
    ex.commit(alpha, model.named_parameters())
    committed = full()
    checks.expect("commit = the candidate, bitwise", all(bitwise_equal(committed[n], candidate[n]) for n in committed))
    with torch.no_grad():
        reference.load_state_dict(committed)
    step(model, optimizer, 2)
    step(reference, ref_optimizer, 2)
    after = full()
    drift = max(float((after[n] - p.detach()).abs().max()) for n, p in reference.named_parameters())
    checks.expect("the next optimizer step starts from the committed weights (max |Δθ| <= 1e-4)", drift <= 1e-4)
    sq = total_sq(ex.snapshot(model.named_parameters()).squared_norms)
    expected_sq = sum(float((after[n] - committed[n]).double().square().sum()) for n in ex.matched_names)
    checks.expect("the new anchor is the committed point", math.isclose(sq, expected_sq, rel_tol=NORM_RTOL))
    return {"backend": backend, "world_size": dist.get_world_size(), "anchor_device": config.anchor_device,
            "parameters": sum(p.numel() for p in model.parameters()), "selected": len(ex.matched_names),
            "squared_norm_rel_error": norm_error, "forward_max_abs_logit_gap": gap, "next_step_max_abs_gap": drift}


# ------------------------------------------------------------------------------------------- teacher log-prob


def section_teacher_logprob(ctx: Context, checks: Checks) -> dict:
    """token_logprobs (chunked) and the unchunked computation against fp64, in bf16; peak memory of each.

    Bound per position, from bf16 logits (fp32 accumulation over H, one rounding to bf16) reduced in
    fp32: |log p̂ − log p| ≤ 2·(u_bf16·max_v|z_v| + H·u_fp32·max_v Σ_k|h_k·W_vk|) + 4·u_fp32·(max_v|z_v| + log V).
    """
    from effopd_verl.core.token_logprob import DEFAULT_CHUNK_ELEMENTS, rows_per_chunk, target_logprobs, token_logprobs

    s, dev, dtype = ctx.sizes, ctx.device, torch.bfloat16
    chunk_elements = s.lp_chunk_elements or DEFAULT_CHUNK_ELEMENTS
    gen = torch.Generator(device=dev).manual_seed(5)
    hidden = torch.randn(s.lp_tokens, s.lp_hidden, generator=gen, device=dev).to(dtype)
    weight = (0.05 * torch.randn(s.lp_vocab, s.lp_hidden, generator=gen, device=dev)).to(dtype)
    targets = torch.randint(0, s.lp_vocab, (s.lp_tokens,), generator=gen, device=dev)

    reference, bound = fp64_reference(hidden, weight, targets)

    def measured(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, int | None]:
        """fn's output and the memory it allocated at its peak beyond what was allocated before (CUDA)."""
        if not ctx.cuda:
            return fn(), None
        ctx.sync()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        out = fn()
        ctx.sync()
        return out, torch.cuda.max_memory_allocated(dev) - before

    def chunked() -> torch.Tensor:
        return token_logprobs(hidden, weight, targets, max_chunk_elements=chunk_elements)

    def unchunked() -> torch.Tensor:
        return target_logprobs(F.linear(hidden, weight), targets)

    got, chunked_peak = measured(chunked)
    whole, unchunked_peak = measured(unchunked)
    err, whole_err = (got.double() - reference).abs(), (whole.double() - reference).abs()
    rows = rows_per_chunk(s.lp_vocab, chunk_elements)
    numbers = {
        "tokens": s.lp_tokens, "hidden": s.lp_hidden, "vocab": s.lp_vocab, "dtype": "bfloat16",
        "rows_per_chunk": rows, "chunks": -(-s.lp_tokens // rows),
        "chunked_max_abs_error": float(err.max()), "chunked_mean_abs_error": float(err.mean()),
        "unchunked_max_abs_error": float(whole_err.max()), "unchunked_mean_abs_error": float(whole_err.mean()),
        "max_error_over_bound": float((err / bound).max()),
        "chunked_vs_unchunked_max_abs_diff": float((got - whole).abs().max()),
        "chunked_vs_unchunked_fraction_bitwise_equal": float((got == whole).double().mean()),
        "chunked_s": median_seconds(ctx, chunked, 3, warmup=1),
        "unchunked_s": median_seconds(ctx, unchunked, 3, warmup=1),
        "chunked_peak_extra_bytes": chunked_peak, "unchunked_peak_extra_bytes": unchunked_peak,
    }
    checks.expect("output is fp32 [N]", got.dtype == torch.float32 and got.shape == targets.shape)
    checks.expect("chunked = fp64 reference within bf16 logit rounding", bool((err <= bound).all()))
    checks.expect("the bound holds for the unchunked computation (the bound is not too tight)", bool((whole_err <= bound).all()))
    if ctx.cuda:
        few_chunks = 8 * rows * s.lp_vocab * 4  # "a few r × V fp32 tensors"
        numbers["chunked_over_unchunked_peak"] = chunked_peak / unchunked_peak
        checks.expect("chunked peak memory <= 8 fp32 chunks of logits", chunked_peak <= few_chunks)
        checks.expect("chunked peak memory < unchunked", chunked_peak < unchunked_peak)
    return numbers


@torch.no_grad()
def fp64_reference(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, rows: int = 256):
    """Exact log p(targets) of the bf16 inputs (fp64) and the rounding bound of section_teacher_logprob."""
    u_bf16, u32 = torch.finfo(torch.bfloat16).eps / 2, torch.finfo(torch.float32).eps / 2
    n, h = hidden.shape
    w64, w_abs = weight.double(), weight.float().abs()
    reference = torch.empty(n, dtype=torch.float64, device=hidden.device)
    bound = torch.empty_like(reference)
    for start in range(0, n, rows):
        x = hidden[start:start + rows]
        z = x.double() @ w64.T
        y = targets[start:start + rows].unsqueeze(-1)
        reference[start:start + rows] = z.gather(-1, y).squeeze(-1) - torch.logsumexp(z, dim=-1)
        z_max = z.abs().amax(dim=-1)
        accumulated = (x.float().abs() @ w_abs.T).amax(dim=-1).double()
        bound[start:start + rows] = (2 * (u_bf16 * z_max + h * u32 * accumulated)
                                     + 4 * u32 * (z_max + math.log(weight.shape[0])))
        del z
    return reference, bound


# ------------------------------------------------------------------------------------------- driver

SECTIONS: dict[str, Callable[[Context, Checks], dict]] = {
    "extrapolation": section_extrapolation,
    "extrapolation_bandwidth": section_extrapolation_bandwidth,
    "fsdp2": section_fsdp2,
    "teacher_logprob": section_teacher_logprob,
}


def run_section(name: str, ctx: Context) -> dict:
    checks, t0 = Checks(), time.perf_counter()
    result: dict = {"passed": False, "numbers": {}, "error": None}
    try:
        result["numbers"] = SECTIONS[name](ctx, checks)
        result["passed"] = checks.passed
    except Exception:  # recorded; the next section still runs
        result["error"] = traceback.format_exc(limit=8)
    result["checks"] = checks.results
    result["seconds"] = round(time.perf_counter() - t0, 3)
    if ctx.cuda:
        torch.cuda.empty_cache()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--allow-cpu", action="store_true", help="without CUDA, run every section on CPU (gloo)")
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds on CPU), for CI")
    parser.add_argument("--extrap-mib", type=int, default=1024, help="MiB of parameters per dtype (default 1024)")
    parser.add_argument("--only", action="append", choices=list(SECTIONS), help="run only these sections (repeatable)")
    args = parser.parse_args(argv)
    if args.extrap_mib < 1:
        parser.error(f"--extrap-mib {args.extrap_mib} must be at least 1")

    if torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    elif args.allow_cpu:
        device = torch.device("cpu")
    else:
        print("gpu_check: no CUDA device is visible to PyTorch "
              f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); run it on a GPU machine, "
              "or pass --allow-cpu to run the sections on CPU", file=sys.stderr)
        return 2
    ctx = Context(device, Sizes.quick() if args.quick else Sizes.full(args.extrap_mib))
    report = {"command": " ".join(["scripts/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
              "sizes": asdict(ctx.sizes), "environment": env_info(device), "sections": {}}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name in args.only or list(SECTIONS):
        print(f"[gpu_check] {name} ...", flush=True)
        result = report["sections"][name] = run_section(name, ctx)
        print(f"[gpu_check] {name}: {'PASS' if result['passed'] else 'FAIL'} ({result['seconds']:.1f} s)", flush=True)
        if result["error"]:
            print(result["error"], file=sys.stderr, flush=True)
        report["passed"] = all(r["passed"] for r in report["sections"].values())
        report["total_s"] = round(time.perf_counter() - t0, 3)
        out.write_text(json.dumps(report, indent=2))  # after every section: a killed run keeps what it did
    print_table(report)
    print(f"wrote {out}")
    return 0 if report["passed"] else 1


def print_table(report: dict) -> None:
    env = report["environment"]
    print(f"\n{env['device_name']} ({env['device']}), torch {env['torch']}, CUDA {env['cuda']}")
    print(f"{'section':<26}{'result':>8}{'seconds':>10}  failed checks / error")
    for name, r in report["sections"].items():
        failed = [c for c, ok in r["checks"].items() if not ok]
        why = r["error"].strip().splitlines()[-1] if r["error"] else "; ".join(failed)
        print(f"{name:<26}{'PASS' if r['passed'] else 'FAIL':>8}{r['seconds']:>10.1f}  {why}")
    bw = report["sections"].get("extrapolation_bandwidth", {}).get("numbers", {})
    for key, row in bw.items():
        if isinstance(row, dict):
            print(f"  {key:<24} apply {row['apply_s'] * 1e3:8.2f} ms  copy {row['device_copy_s'] * 1e3:8.2f} ms  "
                  f"bandwidth_ratio {row['bandwidth_ratio']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
