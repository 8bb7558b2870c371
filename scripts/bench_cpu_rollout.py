"""Benchmark of the CPU backend's hf rollout: tokens/s batched vs one request at a time, teacher
scoring time, and (from a toy OPD run's verl metrics) an OPD step's time split.

    python scripts/bench_cpu_rollout.py --student runs/toy/student --teacher runs/toy/teacher \
        [--metrics runs/toy_opd/metrics.jsonl] [--batch 16] [--json runs/bench_cpu_rollout.json]

The servers run in this process (the same HFRolloutServer class verl's Ray actors run). The OPD split
reads verl's own timers from a file-logger run (VERL_FILE_LOGGER_PATH, trainer.logger=[console,file]):
``timing_s/gen`` includes the teacher's scoring, which verl's agent loop does right after each
sample is generated; the teacher scoring row here measures that part alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import torch
from verl.workers.config import HFModelConfig, RolloutConfig

from effopd_verl.cpu.hf_server import HFRolloutServer


def _server(model: str, response_length: int) -> HFRolloutServer:
    config = RolloutConfig(name="hf", prompt_length=64, response_length=response_length, tensor_model_parallel_size=1)
    return HFRolloutServer(config=config, model_config=HFModelConfig(path=model), replica_rank=0)


def _prompts(server: HFRolloutServer, n: int) -> list[list[int]]:
    tok = server.model_config.tokenizer
    return [tok.apply_chat_template([{"role": "user", "content": f"{11 * i + 7}+{5 * i + 3}="}], add_generation_prompt=True, tokenize=True, return_dict=False) for i in range(n)]


async def _timed(server: HFRolloutServer, prompts, params, batched: bool) -> tuple[float, int]:
    start = time.perf_counter()
    if batched:
        outs = await asyncio.gather(*[server.generate(prompt_ids=list(p), sampling_params=dict(params), request_id=str(i)) for i, p in enumerate(prompts)])
    else:
        outs = [await server.generate(prompt_ids=list(p), sampling_params=dict(params), request_id=str(i)) for i, p in enumerate(prompts)]
    return time.perf_counter() - start, sum(len(o.token_ids) for o in outs)


def bench_generation(model: str, batch: int, max_tokens: int, repeats: int) -> list[dict]:
    server = _server(model, max_tokens)
    params = {"temperature": 1.0, "max_tokens": max_tokens, "ignore_eos": True, "logprobs": True}
    rows = []
    for n in sorted({1, batch}):
        prompts = _prompts(server, n)
        for batched in (True, False):
            if n == 1 and not batched:
                continue
            runs = [asyncio.run(_timed(server, prompts, params, batched)) for _ in range(repeats)]
            seconds = statistics.median(r[0] for r in runs)
            rows.append({"what": "student generation", "requests": n, "mode": "batched" if batched else "one at a time",
                         "seconds": seconds, "tokens": runs[0][1], "tokens_per_s": runs[0][1] / seconds})
    return rows


def bench_scoring(model: str, batch: int, response_tokens: int, repeats: int, topk: int) -> list[dict]:
    server = _server(model, 1)
    prompts = [p + [p[-1]] * response_tokens for p in _prompts(server, batch)]
    rows = []
    for k in (0, topk):
        params = {"max_tokens": 1, "temperature": 1.0, "prompt_logprobs": k, "detokenize": False}
        for batched in (True, False):
            runs = [asyncio.run(_timed(server, prompts, params, batched)) for _ in range(repeats)]
            seconds = statistics.median(r[0] for r in runs)
            tokens = sum(len(p) for p in prompts)
            rows.append({"what": f"teacher scoring ({'top-' + str(k) if k else 'sampled token'})", "requests": batch,
                         "mode": "batched" if batched else "one at a time", "seconds": seconds, "tokens": tokens,
                         "tokens_per_s": tokens / seconds})
    return rows


def opd_split(metrics: Path) -> list[dict]:
    steps = [json.loads(l) for l in metrics.read_text().splitlines() if l.strip()]
    steps = [s.get("data", s) for s in steps][1:] or [s.get("data", s) for s in steps]  # step 1 holds warm-up
    keys = ["timing_s/gen", "timing_s/old_log_prob", "timing_s/update_actor", "timing_s/update_weights", "timing_s/step"]
    return [{"what": f"OPD step: {k.split('/')[1]}", "seconds": statistics.median(s[k] for s in steps if k in s)} for k in keys if any(k in s for s in steps)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--metrics", type=Path, help="verl file-logger jsonl of a toy OPD run")
    parser.add_argument("--batch", type=int, default=16, help="the toy task's rollout batch")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--topk", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = bench_generation(args.student, args.batch, args.max_tokens, args.repeats)
    rows += bench_scoring(args.teacher, args.batch, args.max_tokens, args.repeats, args.topk)
    if args.metrics:
        rows += opd_split(args.metrics)
    print(f"{'what':<34} {'requests':>8} {'mode':>14} {'seconds':>9} {'tokens/s':>10}")
    for r in rows:
        tps = f"{r['tokens_per_s']:.0f}" if "tokens_per_s" in r else ""
        print(f"{r['what']:<34} {r.get('requests', ''):>8} {r.get('mode', ''):>14} {r['seconds']:>9.3f} {tps:>10}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
