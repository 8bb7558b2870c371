"""Checks of a run's configuration, done on the driver before Ray starts or any step runs.

Each failure raises ``ValueError`` naming the setting and the fix.
"""

from __future__ import annotations

import math
import os

from omegaconf import DictConfig, OmegaConf
from verl.trainer.ppo.utils import need_critic, need_reference_policy

from effopd_verl.core.config import EffOPDConfig
from effopd_verl.integration.state import check_resume, resumed_step_folder
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
    check_batch_layout(config)
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
    check_model_for_effopd(config, effopd)
    if effopd.val_files is not None:
        check_val_files(effopd.val_files, prompt_key=config.data.get("prompt_key", "prompt"))
    step_folder = resumed_step_folder(config.trainer)
    if step_folder is not None:  # a lost or damaged EffOPD state stops the run here, not after the models load
        ranks = config.trainer.n_gpus_per_node * config.trainer.nnodes
        check_resume(step_folder, ranks, without_state=effopd.resume_without_state)
    return effopd


def lora_setting(model: DictConfig) -> str | None:
    """The setting that turns LoRA on, as verl 0.9.1's trainer reads it (``lora.rank``, else ``lora_rank``, or a
    pre-trained ``lora_adapter_path``), or None for full fine-tuning."""
    rank = (model.get("lora") or {}).get("rank", 0) or 0
    if rank > 0:
        return f"actor_rollout_ref.model.lora.rank={rank}"
    if (model.get("lora_rank") or 0) > 0:
        return f"actor_rollout_ref.model.lora_rank={model.lora_rank}"
    if model.get("lora_adapter_path") is not None:
        return f"actor_rollout_ref.model.lora_adapter_path={model.lora_adapter_path!r}"
    return None


def check_model_for_effopd(config: DictConfig, effopd: EffOPDConfig) -> None:
    """Model and reward settings the search cannot run with (LoRA; per score: what the scoring reads)."""
    arr = config.actor_rollout_ref
    lora = lora_setting(arr.model)
    if lora is not None:
        raise ValueError(
            f"{lora} (LoRA) is not supported with effopd.enable=true: LoRA trains the factors of W = W0 + B·A, and "
            "extrapolating B and A separately gives (B + α·dB)(A + α·dA), not W + α·dW (a cross term α²·dB·dA); "
            "train the full model (lora_rank=0, lora.rank=0, no lora_adapter_path) or set effopd.enable=false"
        )
    reward_model = config.reward.reward_model
    if effopd.score == "reward" and reward_model.get("enable", False) and not reward_model.get("enable_resource_pool", False):
        raise ValueError(
            "reward.reward_model.enable=true with reward.reward_model.enable_resource_pool=false (a reward model "
            "colocated with the actor) is not supported with effopd.score=reward: verl computes such rewards only "
            "inside its training step, not for EffOPD's validation rollouts; give the reward model its own GPUs "
            "(reward.reward_model.enable_resource_pool=true with reward.reward_model.n_gpus_per_node and nnodes), "
            "use a rule-based reward (reward.reward_model.enable=false), or set effopd.score=teacher_logprob"
        )
    if effopd.score == "teacher_logprob":
        if arr.model.get("use_fused_kernels", False):
            raise ValueError(
                "actor_rollout_ref.model.use_fused_kernels=true is not supported with effopd.score=teacher_logprob: "
                "verl's fused kernels replace the model's forward by one that returns no logits (log-probs of the "
                "input's own next tokens, computed inside a fused output layer), and the score reads the logits of "
                "the teacher's answers; set actor_rollout_ref.model.use_fused_kernels=false or effopd.score=reward"
            )
        setting, size = ulysses_size(arr.actor, "actor_rollout_ref.actor")
        if size > 1:
            raise ValueError(
                f"{setting}={size} is not supported with effopd.score=teacher_logprob: the score runs each whole "
                "sequence through the model on every rank, while Ulysses sequence parallelism patches attention to "
                f"expect 1/{size} of a sequence per rank; set {setting}=1 or effopd.score=reward"
            )


def ulysses_size(section: DictConfig, prefix: str) -> tuple[str, int]:
    """(setting, value) of a FSDP role's Ulysses sequence-parallel size as verl 0.9.1 resolves it: the role's own
    ``ulysses_sequence_parallel_size`` when > 1 (deprecated spelling), else its ``fsdp_config``'s."""
    own = section.get("ulysses_sequence_parallel_size") or 1
    if own > 1:
        return f"{prefix}.ulysses_sequence_parallel_size", own
    return f"{prefix}.fsdp_config.ulysses_sequence_parallel_size", section.fsdp_config.get("ulysses_sequence_parallel_size") or 1


def _multiples_near(value: int, step: int) -> str:
    """The multiples of ``step`` just below (if positive) and just above ``value``, for a fix's example."""
    below, above = value // step * step, -(-value // step) * step
    return " or ".join(str(v) for v in dict.fromkeys(v for v in (below, above) if v > 0))


def _divisor_at_most(value: int, limit: int) -> int:
    return max(d for d in range(1, min(value, limit) + 1) if value % d == 0)


def check_batch_layout(config: DictConfig) -> None:
    """The data-parallel divisibility verl 0.9.1's v1 trainer asserts inside the workers, checked on the driver.

    The actor (and reference) run on the global pool of R = trainer.n_gpus_per_node × trainer.nnodes ranks (the
    teacher has a pool of its own); with Ulysses sequence parallel size S the data-parallel size is DP = R / S
    (FSDP engine ``get_data_parallel_size``), so S must divide R. Every actor update splits a mini-batch of
    M = ppo_mini_batch_size × rollout.n samples evenly: M % DP == 0 (``engine_workers.train_mini_batch``; the
    config-time check in ``verl.utils.config`` is skipped with use_dynamic_bsz, this assertion is not). Each update's
    batch of b = train_batch_size / parameter_sync_step × rollout.n samples (parameter_sync_step: 1 unless an async
    trainer_mode sets it) is padded by verl to P = ⌈b / L⌉·L with L = lcm(DP, M) (and
    the critic's mini-batch when a critic trains), P / DP samples per rank in the log-prob passes. Without
    use_dynamic_bsz a rank's M / DP update samples and its P / DP log-prob samples must split into whole
    micro-batches of ``*_micro_batch_size_per_gpu`` (``engine.utils.prepare_micro_batches``). The rollout replicas
    take rollout TP × DP × PP ranks each, which must divide R. Only the FSDP engines are checked (Megatron's
    data-parallel size depends on its own parallel layout).
    """
    trainer, arr = config.trainer, config.actor_rollout_ref
    ranks = trainer.n_gpus_per_node * trainer.nnodes
    where = f"trainer.n_gpus_per_node={trainer.n_gpus_per_node} × trainer.nnodes={trainer.nnodes} = {ranks} ranks"
    rollout = arr.rollout
    replica = rollout.tensor_model_parallel_size * rollout.data_parallel_size * rollout.pipeline_model_parallel_size
    if ranks % replica:
        raise ValueError(
            f"{where} do not split into rollout replicas of actor_rollout_ref.rollout.tensor_model_parallel_size="
            f"{rollout.tensor_model_parallel_size} × data_parallel_size={rollout.data_parallel_size} × "
            f"pipeline_model_parallel_size={rollout.pipeline_model_parallel_size} = {replica} ranks; make the product "
            f"divide {ranks}, or change the rank count"
        )
    if arr.actor.get("strategy") not in ("fsdp", "fsdp2"):
        return
    n = rollout.n
    dp = _data_parallel_size(arr.actor, "actor_rollout_ref.actor", ranks, where)
    mini = arr.actor.ppo_mini_batch_size * n
    if mini % dp:
        micro = None if arr.actor.use_dynamic_bsz else arr.actor.get("ppo_micro_batch_size_per_gpu")
        need = dp * (micro or 1)  # the suggested sizes also fill whole micro-batches on every rank
        step = need // math.gcd(n, need)
        raise ValueError(
            f"actor_rollout_ref.actor.ppo_mini_batch_size={arr.actor.ppo_mini_batch_size} × actor_rollout_ref.rollout.n"
            f"={n} = {mini} samples per mini-batch do not split over the actor's {dp} data-parallel ranks ({where} / "
            f"Ulysses sequence parallel size {ranks // dp}): verl asserts mini-batch % data-parallel size == 0 at the "
            f"first actor update, with or without use_dynamic_bsz. Make ppo_mini_batch_size × rollout.n a multiple of "
            f"{dp}: e.g. ppo_mini_batch_size={_multiples_near(arr.actor.ppo_mini_batch_size, step)} (and "
            "data.train_batch_size a multiple of it), or a rank count that divides it"
        )
    multiple = math.lcm(dp, mini)
    if need_critic(config):
        multiple = math.lcm(multiple, config.critic.ppo_mini_batch_size * n)
    mode = trainer.v1.get("trainer_mode") if trainer.get("v1") else None
    sync_steps = (trainer.v1.get(mode) or {}).get("parameter_sync_step", 1) if mode else 1
    batch = config.data.train_batch_size // sync_steps * n
    padded = -(-batch // multiple) * multiple
    if not arr.actor.use_dynamic_bsz:  # the actor's engine reads this flag for its log-prob pass too
        _check_micro_batches(mini // dp, arr.actor, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
                             f"a mini-batch of {mini} samples over {dp} ranks")
        _check_micro_batches(padded // dp, rollout, "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
                             _log_prob_batch(batch, padded, dp))
    if need_reference_policy(config) and not arr.ref.get("log_prob_use_dynamic_bsz", False):
        ref_dp = _data_parallel_size(arr.ref, "actor_rollout_ref.ref", ranks, where)
        if padded % ref_dp:
            setting, size = ulysses_size(arr.ref, "actor_rollout_ref.ref")
            raise ValueError(
                f"{setting}={size} gives the reference model {ref_dp} data-parallel ranks, which do not divide the "
                f"step's {padded} samples (padded for the actor's {dp} data-parallel ranks); give actor_rollout_ref.ref "
                f"the actor's Ulysses sequence parallel size ({ranks // dp})"
            )
        _check_micro_batches(padded // ref_dp, arr.ref, "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu",
                             _log_prob_batch(batch, padded, ref_dp))


def _data_parallel_size(section: DictConfig, prefix: str, ranks: int, where: str) -> int:
    setting, size = ulysses_size(section, prefix)
    if ranks % size:
        raise ValueError(f"{where} do not split into Ulysses groups of {setting}={size}; make it divide {ranks}")
    return ranks // size


def _log_prob_batch(batch: int, padded: int, dp: int) -> str:
    padding = f", padded by verl to {padded}" if padded != batch else ""
    return f"the step's data.train_batch_size × rollout.n = {batch} samples{padding}, over {dp} ranks"


def _check_micro_batches(per_rank: int, section: DictConfig, setting: str, what: str) -> None:
    micro = section.get(setting.rsplit(".", 1)[1])
    if micro and per_rank % micro:
        raise ValueError(
            f"{setting}={micro} does not divide the {per_rank} samples each rank gets ({what}): verl splits them into "
            f"whole micro-batches; set it to a divisor of {per_rank}, e.g. {_divisor_at_most(per_rank, micro)}, or "
            "set actor_rollout_ref.actor.use_dynamic_bsz=true"
        )


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
