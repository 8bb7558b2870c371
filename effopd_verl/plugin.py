"""Entry point of verl's ``verl.plugins`` group: verl imports this module when verl itself is imported.

It activates the CPU backend (:mod:`effopd_verl.cpu`) in processes started with ``VERL_PLATFORM=cpu``
and does nothing otherwise: a GPU run is unaffected.

In a process started as verl's own launcher (``python -m verl.trainer.main_ppo``), which runs plain OPD
and would ignore an ``effopd:`` section, it makes verl's config validation refuse ``effopd.enable=true``
with a pointer to ``effopd-train``, before Ray starts. Other processes (``effopd-train``, Ray workers,
tests) are not touched, nor are launcher runs with ``effopd.enable=false`` or without the section.

verl hides a plugin that fails to import (it logs at debug level), so keep this import cheap and
test it explicitly.
"""

from __future__ import annotations

import functools
import sys
from pathlib import PurePath

from effopd_verl.cpu.activation import activate, cpu_requested

VERL_LAUNCHER = "verl.trainer.main_ppo"
_INTERPRETER_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")


def started_as_verl_launcher(argv: list[str] | None = None) -> bool:
    """Whether the interpreter's command line runs verl's launcher: ``-m verl.trainer.main_ppo`` or its file.

    ``argv`` defaults to ``sys.orig_argv`` (the real command line, Python >= 3.10): with ``-m``, runpy imports
    ``verl``, and so this plugin, before the launcher's code runs, while ``sys.argv[0]`` is still ``'-m'``.
    """
    argv = list(sys.orig_argv if argv is None else argv)
    args = iter(argv[1:])
    for arg in args:
        if arg == "-m":
            return next(args, None) == VERL_LAUNCHER
        if arg.startswith("-m"):
            return arg[2:] == VERL_LAUNCHER
        if arg == "-c" or arg == "-":
            return False
        if arg in _INTERPRETER_OPTIONS_WITH_VALUE:
            next(args, None)
        elif not arg.startswith("-"):  # the script
            return PurePath(arg).parts[-3:] == ("verl", "trainer", "main_ppo.py")
    return False


def refuse_effopd_enabled(config) -> None:
    """Raise when a config given to verl's own launcher asks for EffOPD (``effopd.enable=true``)."""
    from omegaconf import OmegaConf

    if OmegaConf.select(config, "effopd.enable", default=False) is True:
        raise ValueError(
            f"effopd.enable=true, but this is verl's own launcher {VERL_LAUNCHER}, which runs plain "
            "on-policy distillation and ignores the effopd: section; run the same arguments with effopd-train "
            "(effopd-train --config-path DIR --config-name NAME ...), or set effopd.enable=false for plain OPD"
        )


def guard_verl_launcher() -> None:
    """Make ``verl.utils.config.validate_config``, which the launcher calls on the composed config before it starts
    Ray, call :func:`refuse_effopd_enabled` first (the launcher imports the function after this runs)."""
    import verl.utils.config as verl_config

    validate = verl_config.validate_config

    @functools.wraps(validate)
    def validate_config(config, *args, **kwargs):
        refuse_effopd_enabled(config)
        return validate(config, *args, **kwargs)

    verl_config.validate_config = validate_config


if cpu_requested():
    activate()
if started_as_verl_launcher():
    guard_verl_launcher()
