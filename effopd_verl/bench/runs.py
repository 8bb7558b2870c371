"""The benchmark's runs: one ``effopd-train`` (verl's real trainer) per arm, lr and seed, cached under the
work folder, scored through the testbed; and the lr sweep that finds the tuned lr.

Every run has identical seeds, data order, batch and step budget, saves an actor checkpoint after every step
(scored offline, ``checkpoint_scores``), and lets verl validate on the *test* split at the last step as a
cross-check. A finished run is reused when its command line is unchanged (``DONE`` holds its hash).

The sweep: vanilla OPD at each sweep lr (the first seed, the same budget), scored on the validation split at
every checkpoint; each lr gets a stability verdict and the tuned lr is the stable one with the highest final
validation exact match (``measures.sweep_verdict``, ``measures.pick_tuned_lr``). The grid grows upwards (×3
the largest lr, at most ``extend`` times) while its largest lr is the pick, and, with ``until_unstable``,
until some lr is unstable: wide enough to find where vanilla becomes unstable. The sweep's run at the tuned lr
is the vanilla_tuned run of that seed (same configuration, same folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from omegaconf import OmegaConf

from effopd_verl.bench.arms import Arm, build_arms
from effopd_verl.bench.checkpoint_scores import Assets, CheckpointScorer, Testbed, score_run
from effopd_verl.bench.measures import Curve, pick_tuned_lr, sweep_verdict


@dataclass(frozen=True)
class RunSettings:
    """What every run of one benchmark shares."""

    steps: int
    """Training steps per run (EffOPD triggers at 1, 2, 4, … ≤ steps by default)."""
    batch: int
    """Prompts per step (``data.train_batch_size`` and the PPO mini-batch)."""
    val_size: int
    """EffOPD's validation prompts per search (``effopd.val_size``, sampled from train)."""
    verl_val_freq: int
    """verl's own validation on the test split every this many steps; 0: off."""
    overrides: tuple[str, ...] = ()
    """Extra hydra overrides for every run (``KEY=VALUE``)."""
    keep_checkpoints: bool = False
    """Keep each run's checkpoints after scoring (they are deleted by default)."""

    def __post_init__(self):
        for name in ("steps", "batch", "val_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if self.verl_val_freq < 0:
            raise ValueError(f"--verl-val-freq must be ≥ 0 (0: off), got {self.verl_val_freq}")
        bad = [o for o in self.overrides if "=" not in o]
        if bad:
            raise ValueError(f"--override must be KEY=VALUE, got {bad}")


def work_folder(root: Path, testbed: Testbed, task: str, settings: RunSettings) -> Path:
    """The folder of this benchmark's runs: ``<task>_s<steps>_b<batch>[_<hash of --override>]`` (the toy's
    historical name; other testbeds are prefixed with their name)."""
    variant = "_" + hashlib.sha256(json.dumps(list(settings.overrides)).encode()).hexdigest()[:8] if settings.overrides else ""
    prefix = "" if testbed.name == "toy" else f"{testbed.name}_"
    return root / f"{prefix}{task}_s{settings.steps}_b{settings.batch}{variant}"


def read_metrics(path: Path) -> dict[int, dict]:
    """verl's file logger (one JSON record per line) merged by step."""
    merged: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                merged.setdefault(int(r["step"]), {}).update(r.get("data", {}))
    return merged


def train_command(testbed: Testbed, assets: Assets, settings: RunSettings, lr: float, seed: int, extra: list[str]) -> list[str]:
    """The ``effopd-train`` command line of one run (without its output folders)."""
    return [
        sys.executable, "-m", "effopd_verl.main", "--config-name", testbed.config_name,
        *assets.run_overrides(val_file=assets.test_file),
        f"trainer.total_training_steps={settings.steps}", "trainer.n_gpus_per_node=1",
        f"data.train_batch_size={settings.batch}", f"actor_rollout_ref.actor.ppo_mini_batch_size={settings.batch}",
        f"actor_rollout_ref.actor.optim.lr={lr:g}",
        f"data.seed={seed}", f"actor_rollout_ref.rollout.seed={seed}", f"effopd.seed={seed}",
        f"effopd.val_size={settings.val_size}",
        "trainer.save_freq=1", "trainer.val_before_train=false",
        f"trainer.test_freq={settings.verl_val_freq if settings.verl_val_freq > 0 else -1}",
        "trainer.logger=[console,file]", "trainer.resume_mode=disable",
        *settings.overrides, *extra,
    ]


def run_key(cmd: list[str]) -> str:
    """The hash a finished run leaves in its ``DONE`` file: of its command line without the interpreter."""
    return hashlib.sha256(json.dumps(cmd[1:]).encode()).hexdigest()[:16]


def run_is_cached(run_dir: Path, cmd: list[str]) -> bool:
    """Whether ``run_dir`` holds a finished run of ``cmd``."""
    done = run_dir / "DONE"
    return done.exists() and done.read_text().strip() == run_key(cmd)


def run_training(tag: str, run_dir: Path, cmd: list[str], steps: int) -> dict[int, dict]:
    """Run ``cmd`` in ``run_dir`` unless a finished run of the same command is there; verl's metrics by step."""
    key = run_key(cmd)
    done = run_dir / "DONE"
    if run_is_cached(run_dir, cmd):
        print(f"[bench] {tag}: cached ({run_dir})", flush=True)
        return read_metrics(run_dir / "metrics.jsonl")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    cmd = cmd + [f"trainer.default_local_dir={run_dir / 'checkpoints'}", f"hydra.run.dir={run_dir / 'hydra'}"]
    (run_dir / "command.json").write_text(json.dumps(cmd, indent=1))
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(run_dir / "metrics.jsonl"), "RAY_DEDUP_LOGS": "0",
           "PYTHONUNBUFFERED": "1"}
    start = time.time()
    print(f"[bench] {tag}: starting ({steps} steps)", flush=True)
    progress = re.compile(r"\bstep:(\d+) - ")
    last = -1
    with open(run_dir / "train.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace")
        for line in proc.stdout:
            log.write(line)
            for m in progress.finditer(line):
                k = int(m.group(1))
                if k != last:
                    last = k
                    print(f"[bench] {tag}: step {k}/{steps} ({time.time() - start:.0f}s)", flush=True)
            if "[effopd] step" in line and "accepted" in line:
                print(f"[bench] {tag}: {line.split('[effopd]', 1)[1].strip()}", flush=True)
        rc = proc.wait()
    if rc != 0:
        raise SystemExit(f"[bench] {tag}: effopd-train failed (exit {rc}); see {run_dir / 'train.log'}")
    print(f"[bench] {tag}: trained in {time.time() - start:.0f}s", flush=True)
    (run_dir / "curves.json").unlink(missing_ok=True)
    done.write_text(key)
    return read_metrics(run_dir / "metrics.jsonl")


def effopd_defaults() -> dict:
    """The ``effopd:`` section every run starts from (``configs/effopd_defaults.yaml``), recorded in the benchmark's
    JSON: a default that changes (the acceptance rule's did once) changes what an EffOPD arm means."""
    text = (resources.files("effopd_verl.configs") / "effopd_defaults.yaml").read_text()
    return OmegaConf.to_container(OmegaConf.create(text))["effopd"]


@dataclass(frozen=True)
class EarlierCurves:
    """The curves of an earlier benchmark's JSON (``--json``) of the same setup (testbed, task, assets, steps, batch,
    overrides): an arm whose run is not under the work folder takes its curve from there instead of being re-run
    (its run folder may be gone). A curve serves the runs with the same run overrides, lr and seed: a vanilla curve
    any vanilla arm at that lr (a vanilla run depends on no ``effopd.*`` setting); an EffOPD curve the arm with the
    same method, α grid and per-arm overrides, when the validation size and the ``effopd:`` defaults
    (``effopd_defaults``; older JSONs lack them: their EffOPD curves are re-run) match too. An EffOPD curve is
    only as current as the plugin that made it: re-run it after a change to the search."""

    path: str
    curves: dict[tuple[tuple[str, ...], str, int], Curve]
    """(run overrides, lr formatted ``%g``, seed) → the test curve."""

    @classmethod
    def load(cls, path: str, testbed: str, task: str, assets: dict, settings: RunSettings) -> EarlierCurves:
        try:
            d = json.loads(Path(path).read_text())
            want = {"testbed": testbed, "task": task, "assets": assets, "steps": settings.steps,
                    "batch_prompts": settings.batch, "overrides": list(settings.overrides)}
            have = {**d, "testbed": d.get("testbed", "toy")}  # the toy's early JSONs predate the key
            differ = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
            alphas = d["effopd_alphas"] if isinstance(d["effopd_alphas"], list) else None
            same_effopd = d["effopd_val_size"] == settings.val_size and d.get("effopd_defaults") == effopd_defaults()
            arms = {a.name: a for a in build_arms(list(d["curves"]), d.get("arm_overrides") or [])}
            curves = {}
            for name, by_seed in d["curves"].items():
                arm = arms[name]
                if arm.method == "vanilla" or same_effopd:
                    for seed, c in by_seed.items():
                        curves[(tuple(arm.hydra_overrides(alphas)), f"{d['lr'][arm.rate]:g}", int(seed))] = Curve.from_json(c)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(f"--curves-from {path}: not a benchmark JSON written by --json ({e!r})") from None
        if differ:
            raise ValueError(f"--curves-from {path}: another setup ({'; '.join(f'{k}: {a!r} there, {b!r} here' for k, (a, b) in differ.items())}); "
                             f"its runs are not this benchmark's: drop the option or match the setup")
        return cls(path, curves)

    def curve(self, arm: Arm, lr: float, seed: int, alphas: list[float] | None) -> Curve | None:
        """The earlier curve of ``arm``'s run at ``lr`` and ``seed`` (with the α grid ``alphas``), if there is one."""
        return self.curves.get((tuple(arm.hydra_overrides(alphas)), f"{lr:g}", seed))


@dataclass
class Runner:
    """Trains and scores runs of one benchmark (one testbed, assets, settings and work folder)."""

    testbed: Testbed
    assets: Assets
    settings: RunSettings
    work: Path
    scorers: dict[str, CheckpointScorer]
    """Split name → scorer: ``test`` (every checkpoint) and ``val`` (the sweep's)."""
    earlier: EarlierCurves | None = None
    """Curves to take instead of training an arm whose run is not cached."""
    taken_from_earlier: dict[str, list[int]] = field(default_factory=dict)
    """Arm name → the seeds whose curve came from ``earlier``."""

    def run(self, tag: str, lr: float, seed: int, extra: list[str], every_step: tuple[str, ...] = ("test",)) -> dict[str, Curve]:
        """One run, trained (or cached) and scored on every split."""
        cmd = train_command(self.testbed, self.assets, self.settings, lr, seed, extra)
        print(f"[bench] {tag}: lr {lr:g}, seed {seed}, {self.settings.steps} steps × {self.settings.batch} prompts", flush=True)
        metrics = run_training(tag, self.work / tag, cmd, self.settings.steps)
        return score_run(tag, self.work / tag, metrics, self.scorers, self.settings.keep_checkpoints, every_step)

    def run_arm(self, arm: Arm, lr: float, seed: int, alphas: list[float] | None) -> Curve:
        """An arm's run at ``lr`` and ``seed``: its test curve (not cached: from ``earlier`` if it has it)."""
        tag, extra = arm.run_tag(lr, seed, alphas), arm.hydra_overrides(alphas)
        earlier = self.earlier.curve(arm, lr, seed, alphas) if self.earlier else None
        if earlier and not run_is_cached(self.work / tag, train_command(self.testbed, self.assets, self.settings, lr, seed, extra)):
            print(f"[bench] {tag}: not under {self.work}; its curve is taken from {self.earlier.path}", flush=True)
            self.taken_from_earlier.setdefault(arm.name, []).append(seed)
            return earlier
        return self.run(tag, lr, seed, extra)["test"]


@dataclass
class Sweep:
    """The lr sweep's outcome."""

    tuned: float
    grid: list[float]
    verdicts: dict[float, dict] = field(default_factory=dict)
    """lr → ``measures.sweep_verdict``."""

    def how(self, seed: int, settings: RunSettings, val_rows: int, extend: int, until_unstable: bool, tol: float) -> str:
        grow = "while the best was the largest" + (" or no lr was unstable" if until_unstable else "")
        return (f"vanilla OPD at lr in {[f'{x:g}' for x in self.grid]} (upper end extended x3 {grow}, at most {extend} "
                f"times), seed {seed}, {settings.steps} steps x {settings.batch} prompts; picked the highest final exact "
                f"match on the validation split ({val_rows} prompts, not test) among the stable lrs (every logged loss "
                f"finite, final validation exact match at most {tol:g} below the run's best)")


def sweep_lr(runner: Runner, lrs: list[float], seed: int, extend: int, until_unstable: bool, tol: float) -> Sweep:
    """The tuned lr (see the module docstring)."""
    grid, verdicts, added = sorted(set(lrs)), {}, 0
    while True:
        for lr in grid:
            if lr not in verdicts:
                c = runner.run(f"vanilla_lr{lr:g}_seed{seed}", lr, seed, [], every_step=("test", "val"))
                verdicts[lr] = sweep_verdict(c["val"], c["val"].loss, tol)
                v = verdicts[lr]
                print(f"[bench] sweep: lr {lr:g} → final validation accuracy {v['val_acc_final']:.3f} (best "
                      f"{v['val_acc_best']:.3f} over {v['val_points']} checkpoints, losses finite: {v['loss_finite']}): "
                      f"{'stable' if v['stable'] else 'UNSTABLE'}", flush=True)
        finals = {lr: v["val_acc_final"] for lr, v in verdicts.items()}
        try:
            tuned = pick_tuned_lr(finals, {lr: v["stable"] for lr, v in verdicts.items()})
        except ValueError as e:
            raise SystemExit(f"[bench] sweep: {e}") from None
        grow = tuned == max(grid) or (until_unstable and all(v["stable"] for v in verdicts.values()))
        if not grow or added >= extend:
            return Sweep(tuned, grid, verdicts)
        grid.append(round(max(grid) * 3, 12))
        added += 1
        print(f"[bench] sweep: {'the best lr is the largest tried' if tuned == max(grid[:-1]) else 'no lr was unstable yet'}; "
              f"also trying {grid[-1]:g}", flush=True)
