"""The Ray TaskRunner that runs verl's v1 training with EffOPDTrainer in place of the ``sync`` trainer.

verl picks the trainer class by ``trainer.v1.trainer_mode`` from a registry, and the mode string also
switches behaviour throughout verl's trainer, so the mode stays ``sync``: inside this TaskRunner's
process only, the ``sync`` entry is pointed at EffOPDTrainer before verl's own ``run``.
"""

from __future__ import annotations

import ray
from verl.trainer.main_ppo import TaskRunnerV1

from effopd_verl.integration.verl_version import require_supported_verl


class _EffOPDTaskRunner(TaskRunnerV1.__ray_actor_class__):
    def run(self, config):
        require_supported_verl("the EffOPD TaskRunner")
        import verl.trainer.ppo.v1.trainer_base as trainer_base

        from effopd_verl.integration.trainer import EffOPDTrainer

        trainer_base.TRAINER_REGISTRY["sync"] = EffOPDTrainer
        return super().run(config)


EffOPDTaskRunner = ray.remote(_EffOPDTaskRunner)
