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
