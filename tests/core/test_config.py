import math

import pytest

from effopd_verl.core.config import DEFAULT_PARAM_EXCLUDE, DEFAULT_PARAM_INCLUDE, EffOPDConfig


def test_defaults_are_the_papers():
    cfg = EffOPDConfig()
    assert cfg.enable is False
    assert cfg.alphas == (2.0, 4.0, 6.0, 8.0, 10.0)
    assert cfg.val_size == 50 and cfg.val_files is None
    assert cfg.score == "reward" and cfg.anchor_device == "cpu"
    assert (cfg.first_trigger, cfg.growth) == (1, 2)
    assert cfg.min_improvement == 0.0 and cfg.min_improvement_se == 2.0


@pytest.mark.parametrize(
    "name",
    [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.3.self_attn.o_proj.weight",
        "model.layers.0.self_attn.q_proj.bias",
        "model.layers.1.mlp.gate_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
    ],
)
def test_default_filter_takes_attention_and_mlp_projections(name):
    assert EffOPDConfig().selects(name)


@pytest.mark.parametrize(
    "name",
    [
        "model.embed_tokens.weight",
        "lm_head.weight",
        "model.norm.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight",
        "model.layers.0.self_attn.q_norm.weight",
        "model.layers.0.self_attn.k_norm.weight",
    ],
)
def test_default_filter_leaves_embeddings_norms_and_head(name):
    assert not EffOPDConfig().selects(name)


def test_empty_exclude_excludes_nothing():
    cfg = EffOPDConfig(param_include=r"norm", param_exclude="")
    assert cfg.selects("model.norm.weight")


def test_from_mapping_accepts_omegaconf_lists_and_rejects_unknown_keys():
    from omegaconf import OmegaConf

    section = OmegaConf.create({"enable": True, "alphas": [1, 3], "score": "teacher_logprob"})
    cfg = EffOPDConfig.from_mapping(section)
    assert cfg.alphas == (1.0, 3.0) and cfg.score == "teacher_logprob"
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['alpha'\]"):
        EffOPDConfig.from_mapping({"alpha": [2]})
    assert EffOPDConfig.from_mapping(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "kwargs, field, hint",
    [
        ({"enable": "yes"}, "enable", "true or false"),
        ({"alphas": []}, "alphas", "non-empty"),
        ({"alphas": 2}, "alphas", "non-empty list"),
        ({"alphas": [2, 2]}, "alphas", "strictly increasing"),
        ({"alphas": [4, 2]}, "alphas", "strictly increasing"),
        ({"alphas": [0, 2]}, "alphas", "> 0"),
        ({"alphas": [-1]}, "alphas", "> 0"),
        ({"alphas": [2, math.inf]}, "alphas", "finite"),
        ({"alphas": [2, "4"]}, "alphas", "> 0"),
        ({"val_size": 0}, "val_size", ">= 1"),
        ({"val_size": 2.5}, "val_size", "integer"),
        ({"val_size": True}, "val_size", "integer"),
        ({"val_files": ""}, "val_files", "parquet"),
        ({"val_files": 3}, "val_files", "parquet"),
        ({"param_include": "("}, "param_include", "regular expression"),
        ({"param_include": ""}, "param_include", "no parameter"),
        ({"param_exclude": "[a-"}, "param_exclude", "regular expression"),
        ({"param_exclude": None}, "param_exclude", "regular expression"),
        ({"anchor_device": "cuda"}, "anchor_device", "'cpu', 'same'"),
        ({"score": "accuracy"}, "score", "'reward', 'teacher_logprob'"),
        ({"min_improvement": -0.1}, "min_improvement", ">= 0"),
        ({"min_improvement": math.nan}, "min_improvement", "finite"),
        ({"min_improvement_se": -1}, "min_improvement_se", ">= 0"),
        ({"min_improvement_se": "2"}, "min_improvement_se", "number"),
        ({"first_trigger": 0}, "first_trigger", ">= 1"),
        ({"growth": 1}, "growth", ">= 2"),
        ({"growth": 2.0}, "growth", "integer"),
        ({"seed": -1}, "seed", ">= 0"),
        ({"fixed_alpha": 0}, "fixed_alpha", "> 0"),
        ({"fixed_alpha": math.nan}, "fixed_alpha", "finite"),
        ({"direction_cosine": "no"}, "direction_cosine", "true or false"),
        ({"replay_poll_seconds": 0}, "replay_poll_seconds", "> 0"),
        ({"replay_poll_seconds": math.inf}, "replay_poll_seconds", "finite"),
        ({"trigger_every": 0}, "trigger_every", "an integer >= 1, e.g. 4, or null (off)"),
        ({"trigger_every": 4.0}, "trigger_every", "an integer >= 1"),
        ({"backoff_after": -1}, "backoff_after", "an integer >= 1, e.g. 4, or null (off)"),
        ({"backoff_after": True}, "backoff_after", "an integer >= 1"),
        ({"backoff": "halve"}, "backoff", "['double', 'stop']"),
    ],
)
def test_every_invalid_value_names_the_field_the_value_and_the_rule(kwargs, field, hint):
    with pytest.raises(ValueError) as err:
        EffOPDConfig(**kwargs)
    message = str(err.value)
    assert message.startswith(f"effopd.{field}=")
    value = kwargs[field]
    assert repr(list(value) if isinstance(value, (list, tuple)) else value) in message
    assert hint in message


def test_default_patterns_are_exported():
    cfg = EffOPDConfig()
    assert cfg.param_include == DEFAULT_PARAM_INCLUDE and cfg.param_exclude == DEFAULT_PARAM_EXCLUDE


def test_schedule_settings_default_to_the_geometric_schedule_without_backoff():
    cfg = EffOPDConfig()
    assert (cfg.trigger_every, cfg.backoff_after, cfg.backoff) == (None, None, "double")
    cfg = EffOPDConfig(trigger_every=4, backoff_after=2, backoff="stop")
    assert EffOPDConfig.from_mapping(cfg.to_dict()) == cfg
