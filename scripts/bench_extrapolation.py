#!/usr/bin/env python
"""Benchmark: one EffOPD candidate (set θ_t + α·d, then restore θ_t) on FSDP2 local shards vs the
reference approach (gather every full parameter on each rank, back it up to CPU, write the
candidate, restore from the backup).

Runs two gloo ranks on this machine with a Qwen3-shaped model (~100M parameters by default).
Prints a table and writes JSON (``--json``) with ``speedup_vs_full_gather`` (reference time /
sharded time per candidate) and ``extra_bytes_per_rank_over_shard_bytes`` (what EffOPD holds per
rank over the bytes of that rank's selected shard).

    python scripts/bench_extrapolation.py --json runs/bench_extrapolation.json
    python scripts/bench_extrapolation.py --layers 2 --hidden 256 --vocab 4096   # seconds, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from transformers import Qwen3Config, Qwen3ForCausalLM

from effopd_verl.core.config import EffOPDConfig
from effopd_verl.core.extrapolation import DIRECTION_SAMPLE_STRIDE, ShardedExtrapolation

ALPHA = 4.0


def build_model(args) -> Qwen3ForCausalLM:
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3,
        num_hidden_layers=args.layers, num_attention_heads=args.hidden // 64, num_key_value_heads=max(1, args.hidden // 256),
        head_dim=64, max_position_embeddings=512, tie_word_embeddings=False,
    )
    return Qwen3ForCausalLM(config).float()


def perturb(model, scale: float = 1e-3) -> None:
    """Stand-in for an optimizer update: θ_t = θ_anchor + small noise."""
    with torch.no_grad():
        for p in model.parameters():
            p.to_local().add_(torch.randn_like(p.to_local()), alpha=scale)


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        fn()
        dist.barrier()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sharded_candidate(ex: ShardedExtrapolation, model) -> None:
    ex.apply(ALPHA, model.named_parameters())
    ex.restore(model.named_parameters())


class FullGatherReference:
    """The reference implementation's way: a second sharded model as the anchor; per candidate, full
    parameters of both gathered on every rank; a full CPU backup of θ_t per rank."""

    def __init__(self, model, selects):
        self.model, self.selects = model, selects
        self.anchor = {n: DTensor.from_local(p.to_local().clone(), p.device_mesh, p.placements, shape=p.shape, stride=p.stride())
                       for n, p in model.named_parameters() if selects(n)}
        self.backup: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def snapshot(self) -> None:
        self.backup = {n: p.full_tensor().cpu() for n, p in self.model.named_parameters() if self.selects(n)}

    @torch.no_grad()
    def candidate(self) -> None:
        for n, p in self.model.named_parameters():
            if self.selects(n):
                full = p.full_tensor()
                full.add_(full - self.anchor[n].full_tensor(), alpha=ALPHA)
                self._write_local_rows(p, full)
        for n, p in self.model.named_parameters():  # restore from the full backup
            if self.selects(n):
                self._write_local_rows(p, self.backup[n])

    @staticmethod
    def _write_local_rows(p, full: torch.Tensor) -> None:
        """Copy this rank's dim-0 chunk of ``full`` into the shard (FSDP2 shards dim 0 as torch.chunk does)."""
        local = p.to_local()
        if local.numel():
            local.copy_(full.chunk(p.device_mesh.size(), dim=0)[dist.get_rank()])

    def bytes_held(self) -> int:
        anchor = sum(t.to_local().numel() * t.element_size() for t in self.anchor.values())
        return anchor + sum(t.numel() * t.element_size() for t in self.backup.values())


def rank_main(rank: int, world: int, port: int, args, out_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mesh = init_device_mesh("cpu", (world,))
        model = build_model(args)
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
        selects = EffOPDConfig().selects
        total_params = sum(p.numel() for p in model.parameters())
        shard_bytes = sum(p.to_local().numel() * 4 for n, p in model.named_parameters() if selects(n))
        sample_bytes = sum(  # the 1/61 sample of d behind effopd/geometry/direction_cosine
            -(-p.to_local().numel() // DIRECTION_SAMPLE_STRIDE) * 4 for n, p in model.named_parameters() if selects(n)
        )
        say = print if rank == 0 else (lambda *a, **k: None)
        say(f"[bench] {total_params / 1e6:.1f}M parameters, {world} gloo ranks; "
            f"selected shard per rank {shard_bytes / 2**20:.1f} MiB", flush=True)

        ex = ShardedExtrapolation(selects)
        ex.set_anchor(model.named_parameters())
        reference = FullGatherReference(model, selects)
        perturb(model)

        say("[bench] sharded: snapshot", flush=True)
        sharded_snapshot_s = timed(lambda: ex.snapshot(model.named_parameters()), 1)
        say("[bench] sharded: candidate + restore", flush=True)
        sharded_s = timed(lambda: sharded_candidate(ex, model), args.repeats)
        say("[bench] full gather: backup", flush=True)
        reference_snapshot_s = timed(reference.snapshot, 1)
        say("[bench] full gather: candidate + restore", flush=True)
        reference_s = timed(reference.candidate, args.repeats)

        result = {
            "world_size": world,
            "parameters": total_params,
            "selected_shard_bytes_per_rank": shard_bytes,
            "sharded": {"candidate_plus_restore_s": sharded_s, "snapshot_s": sharded_snapshot_s,
                        "extra_bytes_per_rank": ex.bytes_held()},
            "full_gather": {"candidate_plus_restore_s": reference_s, "snapshot_s": reference_snapshot_s,
                            "extra_bytes_per_rank": reference.bytes_held()},
            "speedup_vs_full_gather": reference_s / sharded_s,
            "extra_bytes_per_rank_over_shard_bytes": ex.bytes_held() / shard_bytes,
            "direction_sample_bytes_over_shard_bytes": sample_bytes / shard_bytes,
            "full_gather_extra_bytes_per_rank_over_shard_bytes": reference.bytes_held() / shard_bytes,
            "peak_rss_bytes_rank": _peak_rss(),
        }
        rss = [None] * world
        dist.all_gather_object(rss, result["peak_rss_bytes_rank"])
        result["peak_rss_bytes_per_rank"] = rss
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump(result, f, indent=2)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def print_table(r: dict) -> None:
    mib = 2**20
    rows = [
        ("sharded (effopd)", r["sharded"]),
        ("full gather (reference)", r["full_gather"]),
    ]
    print(f"\n{'method':<26}{'candidate+restore s':>21}{'snapshot s':>12}{'extra MiB/rank':>16}{'× shard':>9}")
    for name, m in rows:
        print(f"{name:<26}{m['candidate_plus_restore_s']:>21.3f}{m['snapshot_s']:>12.3f}"
              f"{m['extra_bytes_per_rank'] / mib:>16.1f}{m['extra_bytes_per_rank'] / r['selected_shard_bytes_per_rank']:>9.2f}")
    print(f"\nspeedup_vs_full_gather = {r['speedup_vs_full_gather']:.1f}x (target >= 10x)")
    print(f"extra_bytes_per_rank_over_shard_bytes = {r['extra_bytes_per_rank_over_shard_bytes']:.3f} (target <= 2), "
          f"of which {r['direction_sample_bytes_over_shard_bytes']:.3f} is the direction-cosine sample "
          "(effopd.direction_cosine=false: anchor + θ_t only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="runs/bench_extrapolation.json")
    args = parser.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(rank_main, args=(args.world_size, port, args, args.json), nprocs=args.world_size, join=True)
    with open(args.json) as f:
        result = json.load(f)
    print_table(result)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
