"""The toy reward, called directly and as verl 0.9.1 loads and calls it."""

import inspect

import pytest
from omegaconf import OmegaConf

from effopd_verl.toy import reward
from effopd_verl.toy.reward import REWARD_NAME, REWARD_PKG_PATH, compute_score

SRC = "effopd_toy/add"


@pytest.mark.parametrize(
    "response, truth, expected",
    [
        ("46", "46", 1.0),
        (" 46\n", "46", 1.0),  # surrounding whitespace is not the answer
        ("47", "46", 0.0),
        ("046", "46", 0.0),  # a leading zero is a different string
        ("46 46", "46", 0.0),
        ("46\n47", "46", 0.0),
        ("4", "46", 0.0),  # a prefix is not enough
        ("", "46", 0.0),
        ("dcba", "dcba", 1.0),
        ("abcd", "dcba", 0.0),
    ],
)
def test_exact_match(response, truth, expected):
    assert compute_score(data_source=SRC, solution_str=response, ground_truth=truth, extra_info={}) == expected


def test_missing_response_scores_zero_and_unknown_source_is_an_error():
    assert compute_score(SRC, None, "46") == 0.0
    with pytest.raises(ValueError, match="data_source"):
        compute_score("openai/gsm8k", "46", "46")


def test_extra_keywords_from_verl_are_accepted():
    assert compute_score(SRC, "46", "46", extra_info={"num_turns": 2}, reward_router_address=None,
                         reward_model_tokenizer=None) == 1.0


@pytest.mark.parametrize("path", ["file", REWARD_PKG_PATH])
def test_verl_loads_and_calls_it(path):
    """verl's own loader, with the file path (what build_assets records) and the pkg:// form."""
    from verl.trainer.ppo.reward import get_custom_reward_fn

    if path == "file":
        path = reward.__file__
    config = OmegaConf.create({"reward": {"custom_reward_function": {"path": path, "name": REWARD_NAME,
                                                                     "reward_kwargs": {}}}})
    fn = get_custom_reward_fn(config)
    assert not inspect.iscoroutinefunction(compute_score)
    # the naive reward manager's call: keyword arguments only
    assert fn(data_source=SRC, solution_str="46", ground_truth="46", extra_info={"num_turns": 2}) == 1.0
    assert fn(data_source=SRC, solution_str="45", ground_truth="46", extra_info={}) == 0.0


def test_the_module_is_self_contained():
    """verl may exec reward.py as a bare file: it must not import from this package."""
    source = inspect.getsource(reward)
    assert "from ." not in source and "import effopd_verl" not in source
