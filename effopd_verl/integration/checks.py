"""Checks of a run's configuration, done on the driver before Ray starts or any step runs.

Each failure raises ``ValueError`` naming the setting and the fix.
"""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf

from effopd_verl.core.config import EffOPDConfig
from effopd_verl.integration.verl_version import require_supported_verl


def effopd_config_of(config: DictConfig) -> EffOPDConfig:
    """The validated ``effopd:`` section (defaults when the section is absent)."""
    section = config.get("effopd")
    if section is None:
        return EffOPDConfig()
    return EffOPDConfig.from_mapping(OmegaConf.to_container(section, resolve=True))


def check_run_config(config: DictConfig) -> EffOPDConfig:
    """Validate everything EffOPD needs from the run's config; returns the effopd settings."""
    effopd = effopd_config_of(config)
    require_supported_verl()
    if not effopd.enable:
        return effopd
    if not config.distillation.get("enabled", False):
        raise ValueError(
            "effopd.enable=true needs on-policy distillation: set distillation.enabled=true and give the teacher "
            "(distillation.teacher_models.teacher_model.model_path=...), or set effopd.enable=false"
        )
    if not config.trainer.get("use_v1", False):
        raise ValueError("effopd.enable=true runs on verl's v1 trainer: set trainer.use_v1=true")
    mode = config.trainer.v1.get("trainer_mode")
    if mode != "sync":
        raise ValueError(
            f"trainer.v1.trainer_mode={mode!r} is not supported with effopd.enable=true: the search needs the "
            "colocated synchronous trainer; set trainer.v1.trainer_mode=sync"
        )
    strategy = config.actor_rollout_ref.actor.get("strategy")
    if strategy != "fsdp2":
        raise ValueError(
            f"actor_rollout_ref.actor.strategy={strategy!r} is not supported with effopd.enable=true: EffOPD works "
            "on FSDP2's named parameter shards (FSDP1 flattens them); set actor_rollout_ref.actor.strategy=fsdp2"
        )
    if effopd.val_files is not None:
        check_val_files(effopd.val_files, prompt_key=config.data.get("prompt_key", "prompt"))
    return effopd


def check_val_files(path: str, prompt_key: str = "prompt") -> None:
    """``effopd.val_files`` must be a readable parquet file in verl's RL format."""
    import pyarrow.parquet as pq

    if not os.path.isfile(path):
        raise ValueError(f"effopd.val_files={path!r}: no such file; give a parquet file of validation prompts")
    try:
        columns = pq.read_schema(path).names
    except Exception as err:  # noqa: BLE001 - any reader error means the same to the user
        raise ValueError(f"effopd.val_files={path!r} is not a readable parquet file ({err})") from None
    missing = [c for c in (prompt_key, "data_source", "reward_model") if c not in columns]
    if missing:
        raise ValueError(
            f"effopd.val_files={path!r} is not in verl's RL format: missing column(s) {missing} (has {columns}); "
            "write it like data.train_files (prompt as chat messages, data_source, reward_model.ground_truth)"
        )
