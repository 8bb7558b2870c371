#!/usr/bin/env python
"""kill -9 an EffOPD run in a search or in a checkpoint save, resume it, and compare with a run never interrupted.

Each case (``--case``, on ``--ranks`` FSDP2 ranks) runs ``effopd-train`` on the CPU toy (verl 0.9.1's real
trainer, Ray, FSDP2 over gloo), a checkpoint every step, the same settings and seeds as the uninterrupted run:

* ``search``: when the console shows ``[effopd] step K α=A …`` with A > 0 for ``K = --kill-step`` (θ_K + A·d was
  applied and scored; the search goes on with the next α), the run is killed.
* ``save``: a poller (every 5 ms) watches the checkpoint folder; the moment ``global_step_K/effopd/state.json``
  exists while verl's tracker ``latest_checkpointed_iteration.txt`` still names an earlier step (EffOPD wrote its
  state and verl is saving the actor), the run is killed. The uninterrupted run is watched the same way, which
  measures that window at every step.

Killed means SIGKILL at once to every process carrying this run's tag in its environment (the launcher, Ray's
daemons and workers), as a node losing power leaves them. Whether the kill landed where intended is checked
after it (the tracker, the step folders, the console); ``--attempts`` retries a case that missed. The same
command in the same folder then resumes (``trainer.resume_mode=auto``: the step verl's tracker names, EffOPD's
state from its ``effopd/``) and finishes.

Outcome: the resumed run's search decisions (steps, α tried, outcomes, accepted α) equal the uninterrupted
run's, scores and direction norms to rel 1e-5, every rank's actor shard and EffOPD anchor shard to atol 1e-6 (the
tolerances of ``tests/integration/test_effopd_e2e.py``: two identical runs sum micro-batches in another order).
Time lost = killed wall + resumed wall − uninterrupted wall (cores shared with other jobs: ± tens of seconds).

    python scripts/fault_injection.py --case search --ranks 1 --assets runs/faults_toy --work runs/faults \\
        --json docs/results/faults.json --md docs/results/faults.md

The uninterrupted run of each rank count is reused while its command is unchanged. ``--md`` rewrites only the
section between the ``fault_injection`` markers of that file.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import torch

from effopd_verl.bench.runs import read_metrics, run_key
from effopd_verl.integration.state import STATE_FILE, anchor_file, effopd_folder

CANDIDATE = re.compile(r"\[effopd\] step (\d+) α=(\S+)")
RUNNER = re.compile(r"\(\w*TaskRunner pid=(\d+)\)")
TRACKER = "latest_checkpointed_iteration.txt"
POLL_S = 0.005
REL_TOL, ATOL = 1e-5, 1e-6
SETTINGS = [  # the e2e resume test's under-stepped regime; several α so that a search lasts a while. The acceptance
    # rule is pinned (the paper's: any strict gain): the cached uninterrupted run is keyed on this command line only
    "data.train_batch_size=64", "actor_rollout_ref.actor.ppo_mini_batch_size=64",
    "actor_rollout_ref.actor.optim.lr=1e-5", "effopd.enable=true", "effopd.score=teacher_logprob",
    "effopd.min_improvement=0", "effopd.min_improvement_se=0",
    "effopd.val_size=32", "effopd.alphas=[2,3,4,6,8,100000]", "trainer.save_freq=1", "trainer.logger=[console,file]",
]
# On several ranks the rollout replicas sit behind verl's load balancer, which routes by load: only verl's
# deterministic request ids make each sample's stream independent of the replica serving it (hf_server.seed_tag).
# Without them two identical uninterrupted 2-rank runs already differ at step 1 (measured: 4 vs 5 of 64 rewards).
SEVERAL_RANKS = ["actor_rollout_ref.rollout.full_determinism=true"]


def settings(ranks: int) -> list[str]:
    """The overrides every run on ``ranks`` ranks shares (the cached uninterrupted run is keyed on them)."""
    return SETTINGS + (SEVERAL_RANKS if ranks > 1 else [])

BEGIN, END = "<!-- fault_injection: begin (scripts/fault_injection.py --md) -->", "<!-- fault_injection: end -->"


def train_command(assets, run_dir: Path, steps: int, ranks: int) -> list[str]:
    return [sys.executable, "-m", "effopd_verl.main", "--config-name", "toy_cpu", *assets.run_overrides(),
            f"trainer.total_training_steps={steps}", f"trainer.n_gpus_per_node={ranks}", *settings(ranks),
            f"trainer.default_local_dir={run_dir / 'checkpoints'}", f"hydra.run.dir={run_dir / 'hydra'}"]


def tracker(checkpoints: Path) -> int | None:
    try:
        return int((checkpoints / TRACKER).read_text().strip())
    except (OSError, ValueError):  # absent, or being written
        return None


def tagged_processes(tag: str) -> dict[int, str]:
    """pid → command of the processes whose environment holds ``EFFOPD_FAULT_TAG=tag`` (a run and its descendants)."""
    marker, found = f"EFFOPD_FAULT_TAG={tag}".encode(), {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:60].strip()
        except OSError:
            pass  # gone, or not ours to read
    return found


def kill_all(tag: str, known: dict[int, str]) -> list[str]:
    """SIGKILL ``known`` at once, then every tagged process still alive, until none is left (30 s at most)."""
    killed, deadline = dict(known), time.time() + 30
    pending = dict(known)
    while pending and time.time() < deadline:
        for pid in pending:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
        pending = tagged_processes(tag)
        killed.update(pending)
    return sorted({name.split(" ")[0] for name in killed.values()})


class RunnerLog:
    """The trainer's own stdout (verl's TaskRunner, a Ray actor) in Ray's session folder, read as it grows. The
    driver's console gets it in batches, late: a search of the toy lasts ~0.5 s and its lines arrive all at once."""

    def __init__(self):
        self.path: Path | None = None
        self.text, self.offset = "", 0

    def locate(self, console_line: str, driver_pid: int) -> None:
        """Find the file from a console line ``(…TaskRunner pid=N) …``: Ray names a session folder after the
        driver's pid and a worker's log after the worker's (``<tmp>/ray/session_*_<driver>/logs/worker-*-<N>.out``)."""
        if self.path is None and (found := RUNNER.search(console_line)):
            root = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir(), "ray")
            logs = sorted(root.glob(f"session_*_{driver_pid}/logs/worker-*-{found[1]}.out"))
            self.path = logs[-1] if logs else None

    def new_lines(self) -> list[str]:
        """The complete lines written since the last call (all of them are kept in ``text``)."""
        if self.path is None:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        self.text += complete.decode(errors="replace")
        return complete.decode(errors="replace").splitlines()


class SaveWatch:
    """Polls the checkpoint folder: when each step's ``effopd/state.json`` and the tracker naming it appear."""

    def __init__(self, checkpoints: Path, kill_step: int | None):
        self.checkpoints, self.kill_step = checkpoints, kill_step
        self.state_seen: dict[int, float] = {}
        self.tracker_seen: dict[int, float] = {}

    def poll(self) -> str | None:
        now, named = time.time(), tracker(self.checkpoints)
        if named is not None:
            self.tracker_seen.setdefault(named, now)
        step = (named or 0) + 1
        if step not in self.state_seen and (self.checkpoints / f"global_step_{step}" / "effopd" / STATE_FILE).exists():
            self.state_seen[step] = now
            if step == self.kill_step:
                return f"global_step_{step}/effopd/{STATE_FILE} written, tracker names {named}"
        return None

    def windows(self) -> dict[int, float]:
        """Step → seconds from its state.json appearing to the tracker naming it (the save case's window)."""
        return {k: round(self.tracker_seen[k] - t, 3) for k, t in self.state_seen.items() if k in self.tracker_seen}


def run(tag: str, run_dir: Path, cmd: list[str], kill_search: int | None = None, watch: SaveWatch | None = None) -> dict:
    """Run ``cmd`` in ``run_dir`` (console ``<tag>.log``, metrics ``<tag>.jsonl``); kill it at the first candidate
    α > 0 of the search of step ``kill_search``, or when ``watch.poll()`` says so (polled every line or 5 ms)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    marker = uuid.uuid4().hex
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(run_dir / f"{tag}.jsonl"), "RAY_DEDUP_LOGS": "0",
           "PYTHONUNBUFFERED": "1", "EFFOPD_FAULT_TAG": marker}
    print(f"[faults] {tag}: starting", flush=True)
    start, lines, reason, known, refreshed, runner = time.time(), [], None, {}, 0.0, RunnerLog()
    proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    pipe: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [*map(pipe.put, proc.stdout), pipe.put(None)], daemon=True).start()
    while reason is None:
        try:
            line = pipe.get(timeout=POLL_S)
        except queue.Empty:
            line = ""
        if line is None:
            break
        lines.append(line)
        if CANDIDATE.search(line):
            print(f"[faults] {tag} +{time.time() - start:.0f}s: {line.strip()}", flush=True)
        runner.locate(line, proc.pid)
        for found in map(CANDIDATE.search, runner.new_lines() if kill_search else []):
            if found and int(found[1]) == kill_search and float(found[2]) > 0:
                reason = found.string.strip()
                break
        if watch is not None and reason is None:
            reason = watch.poll()
        if time.time() - refreshed > 1.0:  # whom to kill, known before the moment comes
            known, refreshed = tagged_processes(marker), time.time()
    killed = kill_all(marker, known) if reason else None
    proc.wait()
    try:
        while (line := pipe.get(timeout=30)) is not None:  # the rest of the console, up to the pipe's end
            lines.append(line)
    except queue.Empty:
        pass  # something untagged still holds the pipe
    if reason is None:
        kill_all(marker, tagged_processes(marker))  # Ray daemons a finished run may leave behind
    wall = time.time() - start
    (run_dir / f"{tag}.log").write_text("".join(lines))
    print(f"[faults] {tag}: rc {proc.returncode} after {wall:.0f}s{f' (killed on: {reason})' if reason else ''}", flush=True)
    if reason is None and proc.returncode != 0:
        raise SystemExit(f"{tag} failed (rc {proc.returncode}); see {run_dir / f'{tag}.log'}:\n{''.join(lines[-40:])}")
    return {"wall_s": round(wall, 1), "killed_on": reason, "killed_processes": killed, "log": "".join(lines),
            "runner_log": (runner.new_lines(), runner.text)[1] if runner.path else None}


def shards(checkpoints: Path, step: int, ranks: int) -> dict[str, torch.Tensor]:
    """Every rank's actor shard (verl's FSDP2 file; DTensors → local) and EffOPD anchor shard at ``step``."""
    from safetensors.torch import load_file

    out = {}
    for rank in range(ranks):
        actor = torch.load(checkpoints / f"global_step_{step}" / "actor" / f"model_world_size_{ranks}_rank_{rank}.pt",
                           map_location="cpu", weights_only=False)  # verl's own file: DTensors need pickle
        out.update({f"rank{rank}/actor/{k}": (v.to_local() if hasattr(v, "to_local") else v) for k, v in actor.items()})
        folder = effopd_folder(str(checkpoints / f"global_step_{step}"))
        out.update({f"rank{rank}/effopd/{k}": v for k, v in load_file(anchor_file(folder, rank, ranks)).items()})
    return out


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """max |a − b| over every tensor; inf if the names or shapes differ."""
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        return float("inf")
    return max(((a[k].float() - b[k].float()).abs().max().item() if a[k].numel() else 0.0 for k in a), default=0.0)


def decisions(history: list[dict]) -> list:
    """Per search: step, accepted α, and every candidate's (α, outcome)."""
    return [[s["step"], s["accepted_alpha"], [[c["alpha"], c["outcome"]] for c in s["candidates"]]] for s in history]


def max_rel_diff(a: list[dict], b: list[dict]) -> float:
    """max relative difference of the direction norms and candidate scores of two histories; inf if they do not pair."""
    na, nb = ([x for s in h for x in (s["direction_norm"], *(c["score"] for c in s["candidates"]))] for h in (a, b))
    if len(na) != len(nb):
        return float("inf")
    return max((0.0 if x == y else abs(x - y) / max(abs(x), abs(y)) for x, y in zip(na, nb)), default=0.0)


def landed(case: str, checkpoints: Path, step: int, runner_log: str | None) -> dict:
    """Where the kill landed: for ``search``, in the search of ``step`` (tracker at step − 1, no folder of ``step``,
    the trainer's own log without the search's 'accepted' line); for ``save``, between EffOPD's state.json of
    ``step`` and verl's tracker naming it."""
    folder, named = checkpoints / f"global_step_{step}", tracker(checkpoints)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []
    if case == "search":
        ok = named == step - 1 and not folder.exists() and f"[effopd] step {step}: accepted" not in (runner_log or "")
        ok = ok and runner_log is not None  # without the trainer's own log, nothing shows where the search was
    else:
        ok = named == step - 1 and (folder / "effopd" / STATE_FILE).is_file()
    last = [line.strip() for line in (runner_log or "").splitlines() if f"[effopd] step {step}" in line]
    return {"in_window": ok, "tracker_after_kill": named, f"global_step_{step}_files_after_kill": files,
            "trainer_last_effopd_lines": last[-3:]}


def uninterrupted(assets, work: Path, steps: int, ranks: int) -> dict:
    """The reference run (reused while its command is unchanged): wall, history, and the save windows it saw."""
    run_dir = work / f"r{ranks}" / "uninterrupted"
    cmd = train_command(assets, run_dir, steps, ranks)
    done = run_dir / "DONE.json"
    if done.exists() and (cached := json.loads(done.read_text()))["key"] == run_key(cmd):
        print(f"[faults] uninterrupted run on {ranks} rank(s): reused ({run_dir})", flush=True)
        return cached
    shutil.rmtree(run_dir, ignore_errors=True)
    watch = SaveWatch(run_dir / "checkpoints", kill_step=None)
    whole = run("uninterrupted", run_dir, cmd, watch=watch)
    result = {"key": run_key(cmd), "wall_s": whole["wall_s"], "save_windows_s": watch.windows()}
    done.write_text(json.dumps(result, indent=1))
    return result


def fault_case(args, assets, work: Path) -> dict:
    ref = uninterrupted(assets, work, args.steps, args.ranks)
    run_dir, step = work / f"r{args.ranks}" / args.case, args.kill_step
    checkpoints = run_dir / "checkpoints"
    attempts = []
    for _ in range(args.attempts):
        shutil.rmtree(run_dir, ignore_errors=True)
        cmd = train_command(assets, run_dir, args.steps, args.ranks)
        watch = SaveWatch(checkpoints, step) if args.case == "save" else None
        killed = run("killed", run_dir, cmd, kill_search=step if args.case == "search" else None, watch=watch)
        if killed["killed_on"] is None:
            raise SystemExit(f"the run finished without reaching the kill point of step {step} ({args.case})")
        where = landed(args.case, checkpoints, step, killed["runner_log"])
        attempts.append({"killed_wall_s": killed["wall_s"], "killed_on": killed["killed_on"],
                         "killed_processes": killed["killed_processes"], **where})
        if where["in_window"]:
            break
        print(f"[faults] the kill missed its window: {where}; trying again", flush=True)
    if not attempts[-1]["in_window"]:
        return {"case": args.case, "ranks": args.ranks, "attempts": attempts, "same": False}
    resumed = run("resumed", run_dir, cmd)
    whole_history = json.loads((work / f"r{args.ranks}" / "uninterrupted" / "checkpoints" / f"global_step_{args.steps}"
                                / "effopd" / STATE_FILE).read_text())["history"]
    history = json.loads((checkpoints / f"global_step_{args.steps}" / "effopd" / STATE_FILE).read_text())["history"]
    rel = max_rel_diff(whole_history, history)
    weight = max_abs_diff(shards(work / f"r{args.ranks}" / "uninterrupted" / "checkpoints", args.steps, args.ranks),
                          shards(checkpoints, args.steps, args.ranks))
    killed_wall = attempts[-1]["killed_wall_s"]
    return {
        "case": args.case, "ranks": args.ranks, "steps": args.steps, "kill_step": step, "settings": settings(args.ranks),
        "attempts": attempts, "landed": f"{sum(a['in_window'] for a in attempts)}/{len(attempts)}",
        "save_window_s_uninterrupted": ref["save_windows_s"].get(str(step), ref["save_windows_s"].get(step)),
        "resumed_first_step": min(read_metrics(run_dir / "resumed.jsonl"), default=None),
        "uninterrupted_wall_s": ref["wall_s"], "killed_wall_s": killed_wall, "resumed_wall_s": resumed["wall_s"],
        "time_lost_s": round(killed_wall + resumed["wall_s"] - ref["wall_s"], 1),
        "decisions_equal": decisions(whole_history) == decisions(history), "decisions": decisions(history),
        "max_rel_score_diff": rel, "max_abs_weight_diff": weight,
        "same": decisions(whole_history) == decisions(history) and rel <= REL_TOL and weight <= ATOL,
    }


def markdown(cases: dict[str, dict]) -> str:
    rows = ["| case | ranks | killed on | kill in window | tracker at kill → first resumed step | decisions equal "
            "| max rel score diff | max abs weight diff | uninterrupted / killed / resumed wall (s) | time lost (s) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in cases.values():
        a = r["attempts"][-1]
        if "decisions_equal" not in r:
            rows.append(f"| {r['case']} | {r['ranks']} | `{a['killed_on']}` | no, in {len(r['attempts'])} attempts | "
                        f"{a['tracker_after_kill']} → not resumed | | | | | |")
            continue
        w = r.get("save_window_s_uninterrupted")
        window = f" (window {w * 1000:.0f} ms)" if r["case"] == "save" and w is not None else ""
        rows.append(
            f"| {r['case']} (step {r['kill_step']} of {r['steps']}) | {r['ranks']} | `{a['killed_on']}` | {r['landed']}{window} "
            f"| {a['tracker_after_kill']} → {r['resumed_first_step']} | {'yes' if r['decisions_equal'] else '**no**'} "
            f"| {r['max_rel_score_diff']:.1e} | {r['max_abs_weight_diff']:.1e}{'' if r['same'] else ' **over tolerance**'} "
            f"| {r['uninterrupted_wall_s']:.0f} / {r['killed_wall_s']:.0f} / {r['resumed_wall_s']:.0f} | {r['time_lost_s']:.0f} |")
    return "\n".join(rows) + "\n"


def replace_section(text: str, table: str) -> str:
    """``text`` with the part between the markers replaced by ``table`` (markers appended if absent)."""
    block = f"{BEGIN}\n{table}{END}"
    if BEGIN in text and END in text:
        return text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", choices=["search", "save"], required=True, help="where the run is killed (see above)")
    p.add_argument("--ranks", type=int, default=1, help="FSDP2 ranks (trainer.n_gpus_per_node)")
    p.add_argument("--assets", required=True, help="toy assets folder (a quick `add` build is made there if absent)")
    p.add_argument("--work", required=True, help="folder of the runs: <work>/r<ranks>/{uninterrupted,<case>}")
    p.add_argument("--steps", type=int, default=3, help="training steps (searches at 1, 2, 4, …)")
    p.add_argument("--kill-step", type=int, default=2, help="the step whose search or save is killed (≥ 2)")
    p.add_argument("--attempts", type=int, default=3, help="kills tried until one lands where intended")
    p.add_argument("--json", default=None, help="merge this case's result into this file (key <case>_r<ranks>)")
    p.add_argument("--md", default=None, help="rewrite the fault table (every case in --json) in this markdown file")
    args = p.parse_args(argv)
    if not 2 <= args.kill_step <= args.steps:
        p.error(f"--kill-step must be in [2, --steps={args.steps}] (a checkpoint to resume from), got {args.kill_step}")
    if args.ranks < 1 or args.attempts < 1:
        p.error("--ranks and --attempts must be ≥ 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from effopd_verl.toy.build import build_assets

    assets = build_assets(args.assets, task="add", seed=0, quick=True)
    result = fault_case(args, assets, Path(args.work).resolve())
    print(json.dumps({k: v for k, v in result.items() if k not in ("settings", "decisions")}, indent=1))
    if args.json:
        path = Path(args.json)
        cases = json.loads(path.read_text())["cases"] if path.exists() else {}
        cases[f"{args.case}_r{args.ranks}"] = result
        path.write_text(json.dumps({"tolerance": {"rel_score": REL_TOL, "abs_weight": ATOL}, "cases": cases}, indent=1) + "\n")
        if args.md:
            Path(args.md).write_text(replace_section(Path(args.md).read_text(), markdown(cases)))
    return 0 if result["same"] else 1


if __name__ == "__main__":
    sys.exit(main())
