"""The pure parts of scoring: which prompts, which trajectory counts, how prompts are tokenized."""

import pytest

from effopd_verl.core.config import EffOPDConfig
from effopd_verl.integration.scoring import _final_output_per_session, validation_prompts


def test_validation_prompts_are_a_seeded_sample_of_the_training_data():
    train = list(range(100))
    a = validation_prompts(EffOPDConfig(val_size=10, seed=3), train, load_files=None)
    b = validation_prompts(EffOPDConfig(val_size=10, seed=3), train, load_files=None)
    c = validation_prompts(EffOPDConfig(val_size=10, seed=4), train, load_files=None)
    assert list(a) == list(b) and list(a) != list(c)
    assert len(set(a)) == 10 and list(a) == sorted(a)


def test_val_files_take_precedence():
    loaded = []
    out = validation_prompts(EffOPDConfig(val_files="v.parquet"), [1, 2], load_files=lambda f: loaded.append(f) or ["x"])
    assert out == ["x"] and loaded == ["v.parquet"]


def test_val_size_larger_than_the_data_is_an_error():
    with pytest.raises(ValueError, match=r"effopd.val_size=50 is larger than the training data \(7 prompts\)"):
        validation_prompts(EffOPDConfig(), list(range(7)), load_files=None)


def test_final_output_per_session_keeps_the_last_turn():
    keys = ["u1_0_0", "u1_0_2", "u1_0_1", "u1_1_0", "u2_0_0"]
    assert sorted(_final_output_per_session(keys)) == ["u1_0_2", "u1_1_0", "u2_0_0"]
