"""The pure parts of scoring: which prompts, which trajectory counts, how prompts are tokenized, which are left out."""

import pytest

from effopd_verl.core.config import EffOPDConfig
from effopd_verl.integration.scoring import _final_output_per_session, answered, validation_prompts


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


def test_prompts_with_an_empty_teacher_answer_are_left_out():
    prompts = [[1, 2], [3], [4, 5], [6]]
    pairs, left_out = answered(prompts, [[7, 8], [], [9], []])
    assert pairs == [([1, 2], [7, 8]), ([4, 5], [9])] and left_out == 2
    assert answered(prompts[:1], [[7]]) == ([([1, 2], [7])], 0)


def test_no_teacher_answer_at_all_or_unpaired_answers_are_errors():
    with pytest.raises(ValueError, match="empty for all 2 EffOPD validation prompts.*effopd.score=reward"):
        answered([[1], [2]], [[], []])
    with pytest.raises(ValueError, match="2 prompts but 1 teacher answers"):
        answered([[1], [2]], [[3]])
