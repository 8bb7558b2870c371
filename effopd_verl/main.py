"""``effopd-train``: verl 0.9.1's PPO/OPD launcher with EffOPD (hydra config ``configs/effopd_trainer.yaml``).

    effopd-train data.train_files=... actor_rollout_ref.model.path=... \\
        distillation.teacher_models.teacher_model.model_path=... effopd.enable=true

    effopd-train --config-name toy_cpu ... effopd.enable=true     # the toy task on a CPU

Everything verl's ``main_ppo`` accepts on the command line works here; the config is checked for
EffOPD's needs before Ray starts.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

PACKAGED_CONFIGS = "pkg://effopd_verl.configs"  # the repository's configs/ folder, installed with the package


def run(config: DictConfig) -> None:
    """Validate ``config`` and train (what the hydra entry calls)."""
    if config.trainer.get("device") == "cpu":  # before verl's trainer modules read the platform at import
        from effopd_verl.cpu import activate

        activate()
    from verl.trainer.main_ppo import run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    from effopd_verl.integration.checks import check_run_config
    from effopd_verl.integration.runner import EffOPDTaskRunner

    check_run_config(config)
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    run_ppo(config, task_runner_class=EffOPDTaskRunner)


@hydra.main(config_path=PACKAGED_CONFIGS, config_name="effopd_trainer", version_base=None)
def main(config: DictConfig) -> None:
    run(config)


if __name__ == "__main__":
    main()
