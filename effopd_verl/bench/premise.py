"""The paper's premise, measured on a finished vanilla OPD run: does the update lock into its final
direction early?

From the student θ_0 and the checkpoints θ_1 … θ_T of one run (verl's single-rank actor files, every
step), with Δ_t = θ_t − θ_0 over all parameters as one vector:

    alignment (cosine)      cos(Δ_t, Δ_T) for every t
    step cosines            cos(u_k, u_{k+1}),  u_k = θ_k − θ_{k−1} (one optimizer step each)
    window cosines          cos(d_j, d_{j+1}),  d_j = θ_{t_j} − θ_{t_{j−1}} on EffOPD's trigger steps
                            t = 0, 1, 2, 4, 8, … ≤ T (the directions a search would extrapolate, none accepted)
    rescaled models         at the early checkpoint e = round(0.1·T) (and 0.5·T):
                              module-wise (the paper's test, ``effopd-analyze --rescale-out``):
                                W_0 + (‖ΔW_T‖_F / ‖ΔW_e‖_F)·ΔW_e per parameter
                              global (EffOPD's: one α for the whole model):  θ_0 + (‖Δ_T‖/‖Δ_e‖)·Δ_e
                            each scored on the test split; recovered share = acc(rescaled) / acc(θ_T)

and the paper's Table 1 geometry of Δ_e, Δ_{T/2}, Δ_T through ``effopd-analyze --paper-table``.

    python scripts/premise.py --testbed smollm2 --assets runs/lm_add1 \\
        --run runs/bench_lm/smollm2_add1_s24_b16_03e6657d/vanilla_lr3e-05_seed0 --out docs/results/premise_smollm2
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

from effopd_verl.bench.checkpoint_scores import CheckpointScorer, load_checkpoint_state
from effopd_verl.core.weight_files import copy_model_files, write_safetensors_folder

State = dict[str, torch.Tensor]


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps with a saved actor checkpoint under ``run_dir/checkpoints``, ascending."""
    steps = [int(p.name.rsplit("_", 1)[1]) for p in (run_dir / "checkpoints").glob("global_step_*")
             if (p / "actor").is_dir()]
    if not steps:
        raise FileNotFoundError(f"no global_step_N/actor checkpoints under {run_dir / 'checkpoints'} "
                                f"(run the benchmark with --keep-checkpoints)")
    return sorted(steps)


def trigger_steps(last: int, first: int = 1, growth: int = 2) -> list[int]:
    """EffOPD's default trigger steps ≤ ``last``, after 0.

    >>> trigger_steps(24)
    [0, 1, 2, 4, 8, 16]
    """
    out, t = [0], first
    while t <= last:
        out.append(t)
        t *= growth
    return out


class Vectors:
    """Differences of weight states (fp32) and their dot products, summed over the base's parameters in fp64."""

    def __init__(self, base: Mapping[str, torch.Tensor]):
        self.names = sorted(base)

    def diff(self, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> State:
        return {n: a[n].float() - b[n].float() for n in self.names}

    def dot(self, x: State, y: State) -> float:
        return float(sum(torch.dot(x[n].double().flatten(), y[n].double().flatten()) for n in self.names))

    def cosine(self, x: State, y: State) -> float:
        den = math.sqrt(self.dot(x, x) * self.dot(y, y))
        return self.dot(x, y) / den if den > 0 else float("nan")


def load_step(run_dir: Path, step: int, names: list[str]) -> State:
    """θ_step restricted to ``names`` (a tied lm_head saved twice is dropped)."""
    state = load_checkpoint_state(run_dir / "checkpoints" / f"global_step_{step}")
    missing = [n for n in names if n not in state]
    if missing:
        raise RuntimeError(f"step {step}: the checkpoint lacks {missing[:3]} of the student's parameters")
    return {n: state[n] for n in names}


def trajectory(run_dir: Path, base: State, steps: list[int], keep: tuple[int, ...] = (), progress=print) -> tuple[dict, dict[int, State]]:
    """The cosines of the module docstring, streaming over the checkpoints (three held at a time), and the
    states of the steps in ``keep`` (read once, for the caller)."""
    vec = Vectors(base)
    final = load_step(run_dir, steps[-1], vec.names)
    delta_final = vec.diff(final, base)
    alignment, step_cos, prev, prev_update = {}, [], base, None
    windows = set(trigger_steps(steps[-1]))
    window_cos, window_anchor, last_window = [], base, None
    kept = {steps[-1]: final} if steps[-1] in keep else {}
    for s in steps:
        theta = final if s == steps[-1] else load_step(run_dir, s, vec.names)
        if s in keep:
            kept[s] = theta
        alignment[s] = vec.cosine(vec.diff(theta, base), delta_final)
        update = vec.diff(theta, prev)
        if prev_update is not None:
            step_cos.append(vec.cosine(prev_update, update))
        if s in windows:
            direction = vec.diff(theta, window_anchor)
            if last_window is not None:
                window_cos.append({"from_window_ending": last_window[0], "to_window_ending": s,
                                   "cosine": vec.cosine(last_window[1], direction)})
            last_window, window_anchor = (s, direction), theta
        prev, prev_update = theta, update
        progress(f"[premise] step {s}: cos(Δ_t, Δ_T) = {alignment[s]:.3f}")
    return {"alignment_cosine": {str(k): v for k, v in alignment.items()}, "step_cosines": step_cos,
            "window_cosines": window_cos, "final_update_norm": math.sqrt(vec.dot(delta_final, delta_final))}, kept


def write_checkpoint_folder(state: State, step: int, base_dir: Path, out: Path) -> Path:
    """θ_step as an HF folder ``out/global_step_<step>`` (the base's config and tokenizer), for effopd-analyze."""
    folder = out / f"global_step_{step}"
    if not (folder / "config.json").exists():
        write_safetensors_folder(folder, ((n, t.contiguous()) for n, t in state.items()))
        copy_model_files(base_dir, folder)
    return folder


def globally_rescaled(base: State, early: State, final: State) -> Iterator[tuple[str, torch.Tensor]]:
    """θ_0 + (‖Δ_T‖/‖Δ_e‖)·Δ_e, one scale for the whole model."""
    vec = Vectors(base)
    de, dt = vec.diff(early, base), vec.diff(final, base)
    scale = math.sqrt(vec.dot(dt, dt) / vec.dot(de, de))
    for n in vec.names:
        yield n, (base[n].double() + scale * de[n].double()).to(base[n].dtype)


def score_state(scorer: CheckpointScorer, state: Mapping[str, torch.Tensor] | None) -> dict:
    scorer.load(None if state is None else dict(state))
    s = scorer.score()
    return {"exact_match": s.exact_match, "teacher_logprob": s.teacher_logprob}


def plot(result: dict, path: Path) -> None:
    """Alignment of Δ_t with Δ_T over the run, and the cosines of consecutive steps and trigger windows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    align = {int(k): v for k, v in result["alignment_cosine_by_step"].items()}
    left.plot(list(align), list(align.values()), marker="o", ms=3, label="cos(Δ_t, Δ_T)")
    topk = {int(k): v for k, v in result["topk_alignment_by_step"].items()}
    left.plot(list(topk), list(topk.values()), "s", label="top-k alignment (attention+MLP mean)")
    left.axvline(result["early_step"], color="grey", ls=":", lw=1)
    left.set(xlabel="step t", ylabel="alignment with the final update", ylim=(0, 1.02),
             title=f"{result['testbed']} {result['task']}: does Δ_t point at Δ_T?")
    left.legend(fontsize=8)
    steps = sorted(align)
    right.plot(steps[1:len(result["step_cosines"]) + 1], result["step_cosines"], marker=".", label="cos(u_k, u_k+1), one step each")
    windows = result["consecutive_windows"]
    right.plot([w["to_window_ending"] for w in windows], [w["cosine"] for w in windows], marker="o",
               label="cos(d_j, d_j+1), trigger windows")
    right.axhline(0, color="grey", lw=0.5)
    right.set(xlabel="step", ylabel="cosine", ylim=(-1, 1), title="consecutive directions")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
