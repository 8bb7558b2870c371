"""The benchmark's arms: a method at a learning rate, named ``<method>_<rate>[-<variant>]``.

Methods (the hydra overrides each adds to the run):

  vanilla        vanilla OPD
  effopd_tlp     EffOPD, score=teacher_logprob
  effopd_reward  EffOPD, score=reward (the paper's)
  fixed2         fixed extrapolation baseline: θ_t + 2·d at every trigger, unscored (ExPO / AlphaOPD style)

Rates, as a factor f of the tuned lr (lr = f · tuned):

  tuned    f = 1
  under    f = 1 / under_factor (the under-stepped lr; 0.1 with the default --under-factor 10)
  x<F>     f = F       (e.g. x3: three times the tuned lr)
  div<F>   f = 1 / F   (e.g. div3: a third of it)

So the historical names (vanilla_tuned, effopd_tlp_tuned, vanilla_under, effopd_reward_under,
effopd_tlp_under, fixed2_under) are arms of this scheme, and ``arms_at_factors`` generates the rest
from a list of factors. A ``-<variant>`` suffix names an EffOPD arm that carries its own extra overrides
(e.g. ``effopd_tlp_tuned-every4`` with ``effopd.trigger_every=4``); it runs in its own folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

METHODS: dict[str, tuple[str, ...]] = {
    # in table order; the overrides each method adds to every one of its runs
    "vanilla": (),
    "effopd_reward": ("effopd.enable=true", "effopd.score=reward"),
    "effopd_tlp": ("effopd.enable=true", "effopd.score=teacher_logprob"),
    "fixed2": ("effopd.enable=true", "effopd.fixed_alpha=2"),
}
SEARCHING = ("effopd_reward", "effopd_tlp")
"""The methods that search α (an ``--alphas`` grid applies to them; the headline's EffOPD side)."""
LEGACY_ARMS = ("vanilla_tuned", "effopd_tlp_tuned", "vanilla_under", "effopd_reward_under", "effopd_tlp_under",
               "fixed2_under")
"""The default arm set (the one every result in docs/results/ was measured with)."""


def parse_factor(text: str) -> float:
    """An lr factor from the command line: a positive number or a fraction (``3``, ``0.1``, ``1/3``)."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"lr factor {text!r} is not a number or a fraction such as 3, 0.1 or 1/3") from None
    if not value > 0:
        raise ValueError(f"lr factor {text!r} must be positive")
    return value


def rate_label(factor: float, under_factor: float) -> str:
    """The rate part of an arm name for lr = factor · tuned (inverse of ``Arm.factor``)."""
    if math.isclose(factor, 1.0):
        return "tuned"
    if math.isclose(factor, 1.0 / under_factor):
        return "under"
    return f"x{factor:g}" if factor > 1 else f"div{1.0 / factor:g}"


@dataclass(frozen=True)
class Arm:
    """One arm: a method at a rate, optionally a named variant with extra overrides."""

    method: str
    """A key of ``METHODS``."""
    rate: str
    """``tuned``, ``under``, ``x<F>`` or ``div<F>`` (see the module docstring)."""
    variant: str = ""
    """Non-empty: a named variant of the arm (its own run folder, its own ``overrides``)."""
    overrides: tuple[str, ...] = field(default=(), compare=False)
    """Extra hydra overrides of this arm only (``KEY=VALUE``), after the method's."""

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"arm method {self.method!r}: expected one of {', '.join(METHODS)}")
        self.factor(10.0)  # the rate parses
        if self.overrides and self.method == "vanilla":
            raise ValueError(f"arm {self.name}: per-arm overrides are for EffOPD arms (vanilla runs are shared "
                             f"by lr); give overrides for every run with --override")
        bad = [o for o in self.overrides if "=" not in o]
        if bad:
            raise ValueError(f"arm {self.name}: overrides must be KEY=VALUE, got {bad}")

    @property
    def name(self) -> str:
        return f"{self.method}_{self.rate}" + (f"-{self.variant}" if self.variant else "")

    @property
    def vanilla(self) -> str:
        """The vanilla arm at the same rate: the reference of this arm's per-arm figures."""
        return f"vanilla_{self.rate}"

    @property
    def searching(self) -> bool:
        return self.method in SEARCHING

    def factor(self, under_factor: float) -> float:
        """lr / tuned lr."""
        if self.rate == "tuned":
            return 1.0
        if self.rate == "under":
            return 1.0 / under_factor
        for prefix, invert in (("x", False), ("div", True)):
            if self.rate.startswith(prefix):
                try:
                    f = parse_factor(self.rate[len(prefix):])
                except ValueError:
                    break
                return 1.0 / f if invert else f
        raise ValueError(f"arm rate {self.rate!r}: expected tuned, under, x<F> or div<F> (e.g. x3, div10)")

    def lr(self, tuned: float, under_factor: float) -> float:
        """This arm's lr (a divided rate is divided, not multiplied by a rounded inverse)."""
        if self.rate == "under":
            return tuned / under_factor
        if self.rate.startswith("div"):
            return tuned / parse_factor(self.rate[3:])
        return tuned * self.factor(under_factor)

    def hydra_overrides(self, alphas: list[float] | None) -> list[str]:
        """The method's overrides, the α grid (searching arms only), then this arm's own."""
        out = list(METHODS[self.method])
        if alphas and self.searching:
            out.append(f"effopd.alphas=[{','.join(format_alphas(alphas))}]")
        return out + list(self.overrides)

    def run_tag(self, lr: float, seed: int, alphas: list[float] | None) -> str:
        """The run folder under the work dir. Vanilla runs are named by lr only (one run serves every vanilla
        arm and the sweep at that lr); an α grid names the searching arms' folders."""
        if self.method == "vanilla":
            return f"vanilla_lr{lr:g}_seed{seed}"
        if alphas and self.searching:
            return f"{self.name}_a{'-'.join(format_alphas(alphas))}_lr{lr:g}_seed{seed}"
        return f"{self.name}_lr{lr:g}_seed{seed}"


def format_alphas(alphas: list[float]) -> list[str]:
    return [f"{a:g}" for a in alphas]


def parse_arm(name: str, overrides: tuple[str, ...] = ()) -> Arm:
    """``<method>_<rate>[-<variant>]`` → Arm (the longest method prefix wins: effopd_tlp before effopd)."""
    base, _, variant = name.partition("-")
    for method in sorted(METHODS, key=len, reverse=True):
        if base.startswith(method + "_"):
            return Arm(method, base[len(method) + 1:], variant, tuple(overrides))
    raise ValueError(f"arm {name!r}: expected <method>_<rate>[-<variant>] with method one of {', '.join(METHODS)} "
                     f"and rate tuned, under, x<F> or div<F> (e.g. effopd_tlp_x3, vanilla_div3)")


def arms_at_factors(factors: list[float], under_factor: float, methods: list[str]) -> list[str]:
    """The arm names of every method at every factor (in the order given)."""
    return [f"{m}_{rate_label(f, under_factor)}" for f in factors for m in methods]


def build_arms(names: list[str], arm_overrides: list[str]) -> list[Arm]:
    """Arms from names (duplicates dropped, order kept) and ``ARM=KEY=VALUE`` per-arm overrides.
    A variant must carry overrides (otherwise it repeats its base arm); an override must name an arm."""
    per_arm: dict[str, list[str]] = {}
    for spec in arm_overrides:
        arm, sep, override = spec.partition("=")
        if not sep or "=" not in override:
            raise ValueError(f"--arm-override {spec!r}: expected ARM=KEY=VALUE, e.g. "
                             f"effopd_tlp_tuned-every4=effopd.trigger_every=4")
        per_arm.setdefault(arm, []).append(override)
    unique = list(dict.fromkeys(names))
    unknown = sorted(set(per_arm) - set(unique))
    if unknown:
        raise ValueError(f"--arm-override names arm(s) {unknown} that are not in the arm set {unique}: add them to --arms")
    arms = [parse_arm(n, tuple(per_arm.get(n, ()))) for n in unique]
    for a in arms:
        if a.variant and not a.overrides:
            raise ValueError(f"arm {a.name} is a variant without overrides: give it --arm-override {a.name}=KEY=VALUE")
    return arms


def table_order(names, lrs: dict[str, float]) -> list[str]:
    """Arms by lr (highest first; ``lrs``: rate → lr), then method in ``METHODS`` order, a base arm before its
    variants: the historical arms keep their historical order."""
    def key(name):
        a = parse_arm(name)
        return (-lrs[a.rate], list(METHODS).index(a.method), a.variant)
    return sorted(names, key=key)
