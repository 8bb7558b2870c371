"""configs/effopd_trainer.yaml composes on verl 0.9.1's ppo_trainer and mirrors EffOPDConfig."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from effopd_verl.core.config import EffOPDConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def compose_effopd(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(config_name="effopd_trainer", overrides=list(overrides))


def test_effopd_section_defaults_equal_the_dataclass_defaults():
    section = OmegaConf.to_container(compose_effopd().effopd)
    assert EffOPDConfig.from_mapping(section) == EffOPDConfig()


def test_the_flag_and_verl_settings():
    cfg = compose_effopd("effopd.enable=true", "effopd.alphas=[2,4]")
    assert EffOPDConfig.from_mapping(OmegaConf.to_container(cfg.effopd)).alphas == (2.0, 4.0)
    assert cfg.distillation.enabled is True
    assert cfg.trainer.use_v1 is True and cfg.trainer.v1.trainer_mode == "sync"
    assert cfg.actor_rollout_ref.actor.strategy == "fsdp2"
    assert cfg.data.train_batch_size > 0  # verl's own defaults are there
