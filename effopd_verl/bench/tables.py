"""The benchmark's output: the printed table (per arm, mean ± std over seeds), the search log, the sweep and
headline tables, the Markdown page and the plot."""

from __future__ import annotations

import os
import statistics

from effopd_verl.bench.arms import parse_arm, table_order
from effopd_verl.bench.measures import Curve, step_equivalents


def fmt(v, digits=3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def table(arms: dict, top: dict, lrs: dict[str, float]) -> str:
    """One row per arm (``lrs``: rate → lr), then one line per top-level ratio."""
    def ms(a, k, d=3):
        m = arms[a]["mean"].get(k)
        if not m or m["mean"] is None:
            return "never" if m and m["missing"] else "—"
        s = fmt(m["mean"], d)
        if m["n"] > 1:
            s += f"±{fmt(m['std'], d)}"
        if m["missing"]:
            s += f" ({m['missing']} never)"
        return s

    head = ["arm", "lr", "best acc", "final acc", "final tlp", "steps→50%", "steps→90%", "wall→50% s", "wall→90% s",
            "wall s", "step-eq→90%", "search s (share)", "accepted α at trigger (per seed, /)", "cos(d_t, d_prev) (per seed, /)"]
    rows = []
    for a in table_order(arms, lrs):
        seeds = list(arms[a]["per_seed"].values())
        alphas = " / ".join(",".join(f"{k}:{v:g}" if isinstance(v, (int, float)) else f"{k}:{v}" for k, v in f["accepted_alpha"].items())
                            for f in seeds).strip(" /") or "—"
        cos = " / ".join(",".join(f"{k}:{v:.2f}" for k, v in f["direction_cosine"].items()) for f in seeds).strip(" /") or "—"
        share = arms[a]["mean"].get("search_share", {}).get("mean")
        rows.append([a, f"{lrs[parse_arm(a).rate]:.0e}", ms(a, "best_acc"), ms(a, "final_acc"), ms(a, "final_teacher_logprob"),
                     ms(a, "steps_to_50", 1), ms(a, "steps_to_90", 1), ms(a, "wall_to_50", 0), ms(a, "wall_to_90", 0),
                     ms(a, "wall_seconds", 0), ms(a, "stepeq_to_90", 1), f"{ms(a, 'search_seconds', 1)} ({fmt(share, 3)})", alphas, cos])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines.append("")
    for k, v in top.items():
        vals = ", ".join(fmt(x, 2) if x is not None else "never" for x in v["values"])
        spread = f" ± {fmt(v['std'], 2)}" if v["n"] > 1 else ""
        lines.append(f"{k}: mean {fmt(v['mean'], 2)}{spread} (per seed: {vals})")
    return "\n".join(lines)


def noise_lines(rows: list[dict]) -> str:
    """One line per seed (``measures.gain_noise``): the best vanilla gain against z standard errors of the test
    split, and, where it does not clear them, that the ratios are noise at this size."""
    out = []
    for r in rows:
        verdict = ("resolved" if r["resolved"] else
                   "NOT resolved: at this size every ratio above is noise, not a measurement")
        out.append(f"seed {r['seed']}: best vanilla gain {r['gain']:.3f} ({r['gain_prompts']:.0f} test prompts, {r['arm']}) "
                   f"vs {r['z']:g} SE = {r['z'] * r['se']:.3f}: {verdict}")
    return "\n".join(out)


def headline_table(details: list[dict]) -> str:
    """Per seed: the target (90% of the best vanilla gain), the best vanilla and EffOPD arms on each axis."""
    if not details:
        return ""
    lines = ["| seed | target acc (arm with the best vanilla gain) | best vanilla: steps (arm) | best EffOPD: steps (arm) "
             "| final acc vanilla / EffOPD | best vanilla: step-eq (arm) | best EffOPD: step-eq (arm) |",
             "|---|---|---|---|---|---|---|"]
    for d in details:
        def side(who, axis):
            x = d.get(f"best_{who}_{axis}")
            return "never" if x is None else f"{fmt(float(x), 1)} ({d.get(f'best_{who}_{axis}_arm')})"
        lines.append(f"| {d['seed']} | {fmt(d['target_acc'])} ({d['best_gain_arm']}) | {side('vanilla', 'steps')} | "
                     f"{side('effopd', 'steps')} | {fmt(d.get('best_vanilla_final_acc'))} / {fmt(d.get('best_effopd_final_acc'))} | "
                     f"{side('vanilla', 'stepeq')} | {side('effopd', 'stepeq')} |")
    return "\n".join(lines)


def sweep_table(verdicts: dict[str, dict]) -> str:
    """One row per sweep lr (``verdicts``: lr as text → ``measures.sweep_verdict``)."""
    if not verdicts:
        return ""
    lines = ["| lr | final val acc | best val acc (checkpoints scored) | losses finite | stable |", "|---|---|---|---|---|"]
    for lr, v in verdicts.items():
        lines.append(f"| {lr} | {fmt(v['val_acc_final'])} | {fmt(v['val_acc_best'])} ({v['val_points']}) | "
                     f"{'yes' if v['loss_finite'] else 'no'} | {'yes' if v['stable'] else 'no'} |")
    return "\n".join(lines)


def search_table(curves: dict[str, dict[int, Curve]]) -> str:
    """Every scored search: ‖d‖ and ‖d‖ per step of its window (t − previous trigger; the first trigger's
    window is its one step), the score of θ_t, each candidate's score, the accepted α. A straight path
    with steady steps keeps ‖d‖ per window step constant; a bending one makes it fall."""
    lines = ["| arm | seed | t | ‖d‖ | ‖d‖ per window step | score θ_t | candidates α: score | accepted α |",
             "|---|---|---|---|---|---|---|---|"]
    for arm, by_seed in curves.items():
        for seed, curve in sorted(by_seed.items()):
            previous = 0
            for t, s in sorted(curve.searches.items()):
                window, previous = t - previous, t
                if not s.get("scores"):
                    continue  # unscored (the fixed-α baseline)
                norm = s.get("direction_norm")
                per_step = f"{norm / window:.4f}" if norm is not None else "—"
                cands = ", ".join(f"{a}: {v:.4f}" for a, v in s["scores"].items())
                lines.append(f"| {arm} | {seed} | {t} | {fmt(norm, 4)} | {per_step} | {fmt(s.get('score_base'), 4)} | "
                             f"{cands} | {s['accepted_alpha']:g} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def markdown(result: dict, command: str) -> str:
    """The benchmark as a Markdown page: how it was run (command, testbed, lrs, measure), the table, the
    headline per seed, the sweep, the search log."""
    a, n = result["assets"], len(result["seeds"])
    testbed = result.get("testbed", "toy")
    sweep = ", ".join(f"{lr} → {acc:.3f}" for lr, acc in result["sweep_val_acc"].items()) or "none"
    others = {k: v for k, v in result["lr"].items() if k not in ("tuned", "under")}
    lines = [
        f"# Speedup benchmark: `{result['task']}` {testbed} ({n} seed{'s' if n > 1 else ''}, "
        f"{result['steps']} steps × {result['batch_prompts']} prompts)", "",
        "```bash", command, "```", "",
        f"- {testbed[:1].upper() + testbed[1:]}: student {a['student_accuracy']:.3f}, teacher {a['teacher_accuracy']:.3f} "
        f"greedy exact match on the {a['num_rows'].get('test')}-prompt test split ({'quick' if a['quick'] else 'full'} "
        f"build, seed {a['seed']}).",
        f"- Overrides for every run: {', '.join(f'`{o}`' for o in result['overrides']) or 'none'}; "
        f"EffOPD α grid: {result['effopd_alphas']}; {result['effopd_val_size']} validation prompts per search.",
        f"- Tuned lr {result['lr']['tuned']:g} ({result['tuned_lr_how']}; validation accuracy per lr: {sweep}); "
        f"under-stepped lr {result['lr']['under']:g} (÷{result['under_factor']:g})"
        + (f"; other rates: {', '.join(f'{k} = {v:g}' for k, v in others.items())}" if others else "") + ".",
    ]
    if result.get("arm_overrides"):
        lines.append(f"- Per-arm overrides: {', '.join(f'`{o}`' for o in result['arm_overrides'])}.")
    lines += [f"- Measured: {result['measure']}. {result['gain_definition']}.", "", result["table"], ""]
    if result.get("headline_table"):
        lines += ["Against the best vanilla arm (any lr), per seed: 90% of the best vanilla gain, the fewest steps "
                  "(and step-equivalents, search included) of any vanilla and of any EffOPD arm:", "",
                  result["headline_table"], ""]
    if result.get("sweep_table"):
        lines += ["The lr sweep (validation split):", "", result["sweep_table"], ""]
    if result.get("search_table"):
        lines += ["Search log (every trigger of every scored EffOPD run):", "", result["search_table"], ""]
    return "\n".join(lines)


LEGACY_STYLES = {"vanilla_tuned": ("k", "-"), "effopd_tlp_tuned": ("tab:purple", "-"), "vanilla_under": ("k", "--"),
                 "effopd_reward_under": ("tab:orange", "--"), "effopd_tlp_under": ("tab:blue", "--"),
                 "fixed2_under": ("tab:red", ":")}
METHOD_COLORS = {"vanilla": "k", "effopd_reward": "tab:orange", "effopd_tlp": "tab:blue", "fixed2": "tab:red"}
VARIANT_COLORS = ("tab:green", "tab:cyan", "tab:olive", "tab:pink", "tab:brown", "tab:gray")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3)))


def style(arm: str, lrs: dict[str, float], variants: list[str]) -> tuple:
    """(color, linestyle): the historical arms keep theirs; others are colored by method (a variant by its
    place in ``variants``) with a line style per lr (highest lr solid)."""
    if arm in LEGACY_STYLES:
        return LEGACY_STYLES[arm]
    a = parse_arm(arm)
    ranked = sorted(set(lrs.values()), reverse=True)
    color = VARIANT_COLORS[variants.index(a.variant) % len(VARIANT_COLORS)] if a.variant else METHOD_COLORS[a.method]
    return color, LINESTYLES[ranked.index(lrs[a.rate]) % len(LINESTYLES)]


def plot(curves: dict[str, dict[int, Curve]], lrs: dict[str, float], out: str, testbed: str = "toy") -> None:
    """Test exact match and teacher log-prob against steps and step-equivalents, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    variants = sorted({parse_arm(a).variant for a in curves} - {""})
    for arm in table_order(curves, lrs):
        by_seed = curves[arm]
        color, ls = style(arm, lrs, variants)
        seeds = sorted(by_seed)
        n = min(len(by_seed[s].steps) for s in seeds)
        steps = by_seed[seeds[0]].steps[:n]
        mean = lambda attr: [statistics.fmean(getattr(by_seed[s], attr)[i] for s in seeds) for i in range(n)]
        acc, tlp = mean("acc"), mean("tlp")
        # seconds on this shared machine inflate with other people's load: plot wall time in units of
        # each run's own median step (load-normalized; raw seconds are in the JSON)
        wall = [statistics.fmean(step_equivalents(by_seed[s])[i] for s in seeds) for i in range(n)]
        label = f"{arm} (lr {lrs[parse_arm(arm).rate]:.0e})"
        for row, ys in enumerate((acc, tlp)):
            for col, xs in enumerate((steps, wall)):
                ax = axes[row][col]
                ax.plot(xs, ys, color=color, linestyle=ls, label=label if (row, col) == (0, 0) else None, linewidth=1.4)
                trig = [i for i, s in enumerate(steps) if s in by_seed[seeds[0]].searches]
                ax.scatter([xs[i] for i in trig], [ys[i] for i in trig], color=color, marker="^", s=28, zorder=3)
    for row, name in enumerate(("test exact match", "test teacher log-prob (per token)")):
        for col, xname in enumerate(("global step", "steps + EffOPD search time in median steps of the run (load-normalized wall time)")):
            ax = axes[row][col]
            ax.set_xlabel(xname)
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
    for t in sorted({t for by_seed in curves.values() for c in by_seed.values() for t in c.searches}):
        for row in range(2):
            axes[row][0].axvline(t, color="gray", alpha=0.15)
    axes[0][0].legend(fontsize=7)
    nseeds = max(len(v) for v in curves.values())
    fig.suptitle(f"OPD on the {testbed} task: mean over {nseeds} seed(s); ▲ EffOPD trigger (search or fixed jump)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
