"""Bad input is rejected on the driver, before Ray starts, with the setting and the fix named."""

from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from effopd_verl.integration.checks import check_run_config
from effopd_verl.integration.verl_version import SUPPORTED_VERL, require_supported_verl

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(config_name="effopd_trainer", overrides=["effopd.enable=true", *overrides])


def test_a_good_config_passes():
    assert check_run_config(config()).enable


def test_disabled_effopd_asks_nothing_of_the_run():
    assert not check_run_config(config("effopd.enable=false", "distillation.enabled=false")).enable


@pytest.mark.parametrize(
    "override, setting, fix",
    [
        ("distillation.enabled=false", "distillation.enabled", "distillation.enabled=true"),
        ("actor_rollout_ref.actor.strategy=fsdp", "actor_rollout_ref.actor.strategy='fsdp'", "strategy=fsdp2"),
        ("actor_rollout_ref.actor.strategy=megatron", "strategy='megatron'", "strategy=fsdp2"),
        ("trainer.v1.trainer_mode=separate_async", "trainer_mode='separate_async'", "trainer_mode=sync"),
        ("trainer.use_v1=false", "trainer.use_v1", "trainer.use_v1=true"),
        ("effopd.alphas=[4,2]", "effopd.alphas=[4, 2]", "strictly increasing"),
        ("effopd.score=accuracy", "effopd.score='accuracy'", "teacher_logprob"),
        ("+effopd.alpha=3", "unknown setting", "allowed are"),
    ],
)
def test_bad_settings(override, setting, fix):
    with pytest.raises(ValueError) as err:
        check_run_config(config(override))
    assert setting in str(err.value) and fix in str(err.value)


def test_val_files_missing_unreadable_or_not_rl_format(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        check_run_config(config(f"effopd.val_files={tmp_path / 'nope.parquet'}"))
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    with pytest.raises(ValueError, match="not a readable parquet file"):
        check_run_config(config(f"effopd.val_files={junk}"))
    wrong = tmp_path / "wrong.parquet"
    pd.DataFrame({"question": ["1+1?"], "answer": ["2"]}).to_parquet(wrong)
    with pytest.raises(ValueError, match=r"not in verl's RL format: missing column\(s\) \['prompt', 'data_source', 'reward_model'\]"):
        check_run_config(config(f"effopd.val_files={wrong}"))
    good = tmp_path / "good.parquet"
    pd.DataFrame({
        "prompt": [[{"role": "user", "content": "1+1?"}]], "data_source": ["toy"],
        "reward_model": [{"style": "rule", "ground_truth": "2"}],
    }).to_parquet(good)
    assert check_run_config(config(f"effopd.val_files={good}")).val_files == str(good)


def test_another_verl_version_is_refused():
    require_supported_verl()  # the installed one is the supported one
    with pytest.raises(RuntimeError, match=rf"needs verl=={SUPPORTED_VERL}, found 0.10.0.*pip install 'verl=={SUPPORTED_VERL}'"):
        require_supported_verl(found="0.10.0")


SHIPPED_RUN_CONFIGS = sorted(p.stem for p in CONFIGS.glob("*.yaml") if p.stem != "effopd_defaults")  # a fragment


def test_the_shipped_run_configs_are_found():
    assert {"effopd_trainer", "toy_cpu"} <= set(SHIPPED_RUN_CONFIGS)


@pytest.mark.parametrize("name", SHIPPED_RUN_CONFIGS)
@pytest.mark.parametrize("enable", [False, True])
def test_every_shipped_config_passes(name, enable):
    """configs/*.yaml; the examples (configs/examples/) are checked in tests/scripts/test_example_configs.py."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose(config_name=name, overrides=[f"effopd.enable={str(enable).lower()}"])
    assert check_run_config(cfg).enable is enable


def layout_error(*overrides: str) -> str:
    with pytest.raises(ValueError) as err:
        check_run_config(config("effopd.enable=false", *overrides))
    return str(err.value)


SIX_RANKS_1024 = ["trainer.n_gpus_per_node=6", "data.train_batch_size=128", "actor_rollout_ref.actor.ppo_mini_batch_size=128",
                  "actor_rollout_ref.rollout.n=8", "actor_rollout_ref.actor.use_dynamic_bsz=true"]


def test_a_mini_batch_that_does_not_split_over_the_ranks_is_refused_with_values_that_do():
    message = layout_error(*SIX_RANKS_1024)  # the examples' old layout: 1024 % 6 == 4
    assert ("actor_rollout_ref.actor.ppo_mini_batch_size=128 × actor_rollout_ref.rollout.n=8 = 1024 samples per "
            "mini-batch do not split over the actor's 6 data-parallel ranks (trainer.n_gpus_per_node=6 × "
            "trainer.nnodes=1 = 6 ranks / Ulysses sequence parallel size 1)") in message
    assert "e.g. ppo_mini_batch_size=126 or 129" in message
    for fixed in (126, 129):  # the suggested values pass
        check_run_config(config(*SIX_RANKS_1024, f"data.train_batch_size={fixed}",
                                f"actor_rollout_ref.actor.ppo_mini_batch_size={fixed}"))
    assert "over the actor's 12 data-parallel ranks" in layout_error(*SIX_RANKS_1024, "trainer.nnodes=2")


def test_the_suggested_mini_batch_also_fills_whole_micro_batches():
    three_ranks = ["trainer.n_gpus_per_node=3", "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
                   "data.train_batch_size=16", "actor_rollout_ref.actor.ppo_mini_batch_size=16",  # the toy's batch
                   "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8", "actor_rollout_ref.actor.use_dynamic_bsz=false"]
    assert "e.g. ppo_mini_batch_size=24 (and data.train_batch_size a multiple of it)" in layout_error(*three_ranks)
    check_run_config(config(*three_ranks, "data.train_batch_size=24", "actor_rollout_ref.actor.ppo_mini_batch_size=24"))


def test_ulysses_sequence_parallel_ranks_are_not_data_parallel():
    twelve = ["data.train_batch_size=12", "actor_rollout_ref.actor.ppo_mini_batch_size=12",
              "actor_rollout_ref.actor.use_dynamic_bsz=true"]  # 12 samples, 8 ranks
    assert "over the actor's 8 data-parallel ranks" in layout_error(*twelve)
    for sp in ("actor_rollout_ref.actor.ulysses_sequence_parallel_size=2",
               "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=2"):
        check_run_config(config("effopd.enable=false", *twelve, sp))  # 4 data-parallel ranks of 2
    message = layout_error("trainer.n_gpus_per_node=6", "actor_rollout_ref.actor.ulysses_sequence_parallel_size=4")
    assert "6 ranks do not split into Ulysses groups of actor_rollout_ref.actor.ulysses_sequence_parallel_size=4" in message


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3"],  # 256 / 8 = 32 per rank
         "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=3 does not divide the 32 samples each rank gets "
         "(a mini-batch of 256 samples over 8 ranks)"),
        (["actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=5"],  # 1024 / 8 = 128 per rank
         "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=5 does not divide the 128 samples each rank gets "
         "(the step's data.train_batch_size × rollout.n = 1024 samples, over 8 ranks): verl splits them into whole "
         "micro-batches; set it to a divisor of 128, e.g. 4"),
        (["data.train_batch_size=1000", "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=48"],
         "does not divide the 128 samples each rank gets (the step's data.train_batch_size × rollout.n = 1000 samples, "
         "padded by verl to 1024, over 8 ranks)"),
        (["actor_rollout_ref.actor.use_kl_loss=true", "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=3"],
         "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=3 does not divide the 128 samples"),
    ],
)
def test_micro_batches_that_do_not_split_a_rank_s_samples_are_refused(overrides, expected):
    message = layout_error(*overrides)
    assert expected in message and "use_dynamic_bsz=true" in message
    check_run_config(config("effopd.enable=false", "actor_rollout_ref.actor.use_dynamic_bsz=true", *overrides))


def test_rollout_replicas_must_divide_the_ranks():
    message = layout_error("trainer.n_gpus_per_node=6", "actor_rollout_ref.rollout.tensor_model_parallel_size=4")
    assert ("6 ranks do not split into rollout replicas of actor_rollout_ref.rollout.tensor_model_parallel_size=4 × "
            "data_parallel_size=1 × pipeline_model_parallel_size=1 = 4 ranks") in message


@pytest.mark.parametrize("lora", ["actor_rollout_ref.model.lora_rank=8", "actor_rollout_ref.model.lora.rank=8",
                                  "actor_rollout_ref.model.lora_adapter_path=/models/adapter"])
def test_lora_is_refused_with_effopd(lora):
    with pytest.raises(ValueError, match=r"\(LoRA\) is not supported with effopd.enable=true: .*not W \+ α·dW"):
        check_run_config(config(lora))
    assert not check_run_config(config("effopd.enable=false", lora)).enable


def test_a_colocated_reward_model_is_refused_with_the_reward_score():
    colocated = ["reward.reward_model.enable=true", "reward.reward_model.enable_resource_pool=false"]
    with pytest.raises(ValueError, match=r"^reward.reward_model.enable=true with reward.reward_model.enable_resource_pool"
                                         r"=false .* not supported with effopd.score=reward: .*effopd.score=teacher_logprob$"):
        check_run_config(config(*colocated))
    check_run_config(config(*colocated, "effopd.score=teacher_logprob"))
    check_run_config(config("reward.reward_model.enable=true", "reward.reward_model.enable_resource_pool=true",
                            "reward.reward_model.n_gpus_per_node=1", "reward.reward_model.nnodes=1"))


@pytest.mark.parametrize(
    "override, setting",
    [
        ("actor_rollout_ref.model.use_fused_kernels=true", "actor_rollout_ref.model.use_fused_kernels=true"),
        ("actor_rollout_ref.actor.ulysses_sequence_parallel_size=2", "actor_rollout_ref.actor.ulysses_sequence_parallel_size=2"),
        ("actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=2",
         "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size=2"),
    ],
)
def test_what_the_teacher_logprob_score_cannot_read_is_refused(override, setting):
    with pytest.raises(ValueError) as err:
        check_run_config(config("effopd.score=teacher_logprob", override))
    assert str(err.value).startswith(f"{setting} is not supported with effopd.score=teacher_logprob")
    assert "effopd.score=reward" in str(err.value)
    check_run_config(config("effopd.score=reward", override))  # the reward score runs rollouts, not this forward
