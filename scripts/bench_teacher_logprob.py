#!/usr/bin/env python
"""Benchmark: peak memory and time of effopd.score=teacher_logprob's log-prob head vs sequence length,
chunked (:func:`effopd_verl.core.token_logprob.token_logprobs`: logits from the final hidden states and
lm_head's weight, a chunk of positions at a time) and unchunked (the former way: whole [T, V] logits,
then an fp32 log_softmax over them).

Inputs are random: hidden states [T, H], an lm_head weight [V, H] (V = 151,936, Qwen's vocabulary, by
default) and target ids; the transformer body is left out, since it is the same on both paths. Each
measurement runs in a fresh process: the peak resident memory of the scoring call over the memory held
just before it (Linux: the peak is reset through ``/proc/self/clear_refs``, then read as ``VmHWM``).
Per length the JSON has ``peak_bytes``, ``unchunked_peak_bytes``, ``seconds``, ``unchunked_seconds`` and
``max_rel_err`` (max |chunked − unchunked| / |unchunked| over the T scores).

    python scripts/bench_teacher_logprob.py --json runs/bench_teacher_logprob.json
    python scripts/bench_teacher_logprob.py --lengths 64 256 --vocab 4096 --hidden 32 --json /tmp/b.json  # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

from effopd_verl.core.token_logprob import DEFAULT_CHUNK_ELEMENTS, rows_per_chunk, token_logprobs

METHODS = ("chunked", "unchunked")


def inputs(tokens: int, args) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded random hidden states, lm_head weight (allocated in ``--dtype``) and targets."""
    g = torch.Generator().manual_seed(0)
    dtype = getattr(torch, args.dtype)
    hidden = torch.randn(tokens, args.hidden, generator=g, dtype=dtype)
    weight = torch.randn(args.vocab, args.hidden, generator=g, dtype=dtype) / args.hidden**0.5
    return hidden, weight, torch.randint(0, args.vocab, (tokens,), generator=g)


def unchunked(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The former way: the whole [T, V] logits in the model's dtype, then an fp32 log_softmax of all of them."""
    return F.linear(hidden, weight).float().log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def measure(method: str, tokens: int, args, scores_path: str) -> dict:
    """In this (fresh) process: the scoring call's peak memory over what is held before it, and its time."""
    hidden, weight, targets = inputs(tokens, args)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    if method == "chunked":
        scores = token_logprobs(hidden, weight, targets, max_chunk_elements=args.chunk_elements)
    else:
        scores = unchunked(hidden, weight, targets)
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM")
    torch.save(scores, scores_path)
    return {"peak_bytes": (peak - before) * 1024, "seconds": seconds}


def max_rel_err(chunked: torch.Tensor, reference: torch.Tensor) -> float:
    """max_i |chunked_i − reference_i| / |reference_i| (0 for no scores)."""
    if not len(reference):
        return 0.0
    return float(((chunked.double() - reference.double()).abs() / reference.double().abs()).max())


def run_child(method: str, tokens: int, args, folder: str) -> tuple[dict, torch.Tensor]:
    scores_path = os.path.join(folder, f"{method}_{tokens}.pt")
    command = [sys.executable, os.path.abspath(__file__), "--child", method, "--tokens", str(tokens),
               "--vocab", str(args.vocab), "--hidden", str(args.hidden), "--dtype", args.dtype,
               "--chunk-elements", str(args.chunk_elements), "--scores", scores_path]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{method} at T={tokens} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), torch.load(scores_path)


def bench(args) -> dict:
    per_length = {}
    with tempfile.TemporaryDirectory() as folder:
        for tokens in args.lengths:
            print(f"[bench] T={tokens}: chunked", flush=True)
            chunked, chunked_scores = run_child("chunked", tokens, args, folder)
            print(f"[bench] T={tokens}: unchunked", flush=True)
            whole, whole_scores = run_child("unchunked", tokens, args, folder)
            per_length[str(tokens)] = {
                "tokens": tokens,
                "peak_bytes": chunked["peak_bytes"],
                "seconds": chunked["seconds"],
                "unchunked_peak_bytes": whole["peak_bytes"],
                "unchunked_seconds": whole["seconds"],
                "max_rel_err": max_rel_err(chunked_scores, whole_scores),
                "fp32_logits_bytes": tokens * args.vocab * 4,
            }
    return {
        "vocab": args.vocab,
        "hidden": args.hidden,
        "dtype": args.dtype,
        "chunk_elements": args.chunk_elements,
        "rows_per_chunk": rows_per_chunk(args.vocab, args.chunk_elements),
        "torch_threads": torch.get_num_threads(),
        "lengths": per_length,
    }


def print_table(result: dict) -> None:
    mib = 2**20
    print(f"\nV={result['vocab']}, H={result['hidden']}, {result['dtype']}, {result['rows_per_chunk']} positions per chunk "
          f"({result['chunk_elements']} logits); peak = resident memory over what the inputs hold")
    print(f"{'T':>7}{'chunked MiB':>13}{'unchunked MiB':>15}{'T×V fp32 MiB':>14}{'chunked s':>11}{'unchunked s':>13}"
          f"{'max rel err':>13}")
    for r in result["lengths"].values():
        print(f"{r['tokens']:>7}{r['peak_bytes'] / mib:>13.1f}{r['unchunked_peak_bytes'] / mib:>15.1f}"
              f"{r['fp32_logits_bytes'] / mib:>14.1f}{r['seconds']:>11.2f}{r['unchunked_seconds']:>13.2f}"
              f"{r['max_rel_err']:>13.1e}")


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 8192], help="positions T scored")
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="of hidden states and weight (bf16 matmuls are slow on most CPUs)")
    parser.add_argument("--chunk-elements", type=int, default=DEFAULT_CHUNK_ELEMENTS, help="logits per chunk")
    parser.add_argument("--json", default="runs/bench_teacher_logprob.json")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scores", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.tokens, args, args.scores)))
        return None
    result = bench(args)
    result["command"] = " ".join(["python scripts/bench_teacher_logprob.py", *(argv if argv is not None else sys.argv[1:])])
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print_table(result)
    print(f"\nwrote {args.json}")
    return result


if __name__ == "__main__":
    main()
