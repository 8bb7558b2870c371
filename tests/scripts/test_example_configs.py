"""configs/examples/*.yaml: compose with hydra on verl 0.9.1's ppo_trainer and hold the recipe they document.

Every key an example writes must already exist in verl's ppo_trainer config (a hydra merge accepts
new keys silently, so composing alone would not catch a misspelt one); the `effopd:` section and
EffOPD's verl settings must match configs/effopd_defaults.yaml; verl's and effopd-verl's own config
checks must pass on the composed result.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir, initialize_config_module
from omegaconf import DictConfig, ListConfig, OmegaConf

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
EXAMPLES = CONFIGS / "examples"
NAMES = {
    1: "qwen3_1p7b_student_qwen3_4b_teacher_deepmath_1node",
    2: "qwen3_1p7b_student_qwen3_4b_teacher_deepmath_2nodes",
}
REQUIRED_PATHS = {  # key -> the environment variable that may give it
    "data.train_files": "EFFOPD_TRAIN_FILES",
    "data.val_files": "EFFOPD_TEST_FILES",
    "actor_rollout_ref.model.path": "EFFOPD_STUDENT_MODEL",
    "distillation.teacher_models.teacher_model.model_path": "EFFOPD_TEACHER_MODEL",
}
FILLED = [
    "data.train_files=/data/deepmath/train.parquet",
    "data.val_files=/data/deepmath/test.parquet",
    "actor_rollout_ref.model.path=/models/Qwen3-1.7B",
    "distillation.teacher_models.teacher_model.model_path=/models/Qwen3-4B",
]
GPUS_PER_NODE = 8


def compose_example(nodes: int, *overrides: str) -> DictConfig:
    """As `effopd-train --config-name examples/<name>` does: the packaged configs folder."""
    with initialize_config_module(config_module="effopd_verl.configs", version_base=None):
        return compose(config_name=f"examples/{NAMES[nodes]}", overrides=list(overrides))


def compose_verl_ppo_trainer() -> DictConfig:
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return compose(config_name="ppo_trainer")


def compose_effopd_trainer() -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        return compose(config_name="effopd_trainer")


def own_yaml(path: Path) -> DictConfig:
    """What the file itself writes (no defaults, no hydra section)."""
    raw = OmegaConf.load(path)
    for key in ("defaults", "hydra"):
        raw.pop(key, None)
    return raw


def leaves(node, prefix: str = ""):
    """(dotted key, raw value) for every leaf of a config, interpolations unresolved."""
    if isinstance(node, DictConfig):
        if len(node) == 0:
            yield prefix, node
        for key in node.keys():
            child = node._get_node(key)
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(child, DictConfig | ListConfig) and not OmegaConf.is_interpolation(node, key):
                yield from leaves(child, path)
            else:
                yield path, child._value()
    else:
        yield prefix, node


def key_exists(cfg: DictConfig, dotted: str) -> bool:
    """True when verl's config has this key, or a free-form dict ({} in verl) above it."""
    node = cfg
    for part in dotted.split("."):
        if isinstance(node, DictConfig) and len(node) == 0 and not OmegaConf.is_missing(node, part):
            return True  # e.g. data.apply_chat_template_kwargs: {} takes any key
        if not isinstance(node, DictConfig) or part not in node.keys():  # `in node` is False for ??? values
            return False
        node = node._get_node(part)
        if isinstance(node, DictConfig | ListConfig):
            continue
        node = node._value()
    return True


@pytest.fixture(scope="module")
def verl_ppo_trainer() -> DictConfig:
    return compose_verl_ppo_trainer()


@pytest.fixture(scope="module")
def examples() -> dict[int, DictConfig]:
    return {nodes: compose_example(nodes, *FILLED) for nodes in NAMES}


def test_both_examples_exist_and_nothing_else_is_in_the_folder():
    assert sorted(p.stem for p in EXAMPLES.glob("*.yaml")) == sorted(NAMES.values())


@pytest.mark.parametrize("nodes", sorted(NAMES))
def test_every_key_an_example_writes_exists_in_verl_ppo_trainer(nodes, verl_ppo_trainer):
    written = own_yaml(EXAMPLES / f"{NAMES[nodes]}.yaml")
    written.pop("effopd")  # the plugin's own section; checked against effopd_defaults.yaml below
    unknown = [key for key, _ in leaves(written) if not key_exists(verl_ppo_trainer, key)]
    assert unknown == []


def test_key_check_catches_a_misspelt_key(verl_ppo_trainer):
    assert key_exists(verl_ppo_trainer, "actor_rollout_ref.actor.optim.lr")
    assert key_exists(verl_ppo_trainer, "data.apply_chat_template_kwargs.enable_thinking")
    assert not key_exists(verl_ppo_trainer, "actor_rollout_ref.actor.optim.learning_rate")
    assert not key_exists(verl_ppo_trainer, "distillation.teacher_model.model_path")  # pre-0.9 name


@pytest.mark.parametrize("nodes", sorted(NAMES))
def test_examples_keep_every_setting_of_effopd_defaults_yaml(nodes, examples):
    """The examples build on effopd_defaults.yaml as effopd_trainer.yaml does: same values, EffOPD on."""
    base_written = own_yaml(CONFIGS / "effopd_defaults.yaml")
    base = compose_effopd_trainer()
    intended = {"effopd.enable": True}  # the examples run EffOPD; effopd_trainer.yaml defaults to OPD
    for key, _ in leaves(base_written):
        expected = intended.get(key, OmegaConf.select(base, key))
        got = OmegaConf.select(examples[nodes], key)
        if isinstance(expected, ListConfig):
            expected, got = OmegaConf.to_container(expected), OmegaConf.to_container(got)
        assert got == expected, key
    assert set(examples[nodes].effopd.keys()) == set(base.effopd.keys())


@pytest.mark.parametrize("nodes", sorted(NAMES))
def test_the_documented_recipe(nodes, examples):
    from effopd_verl.core.config import EffOPDConfig

    cfg = examples[nodes]
    effopd = EffOPDConfig.from_mapping(OmegaConf.to_container(cfg.effopd, resolve=True))
    assert effopd.enable and effopd.alphas == (2.0, 4.0, 6.0, 8.0, 10.0) and effopd.val_size == 50
    assert effopd.score == "reward" and effopd.val_files is None

    actor, rollout = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert actor.strategy == "fsdp2" and actor.fsdp_config.strategy == "fsdp2"
    assert actor.optim.optimizer == "AdamW" and actor.optim.lr == pytest.approx(1e-6)
    assert actor.optim.lr_warmup_steps_ratio == 0 and actor.optim.lr_warmup_steps <= 0
    assert cfg.data.train_batch_size * rollout.n == 960  # rollouts per step: 1,024 does not split over 6 or 12 ranks
    student_ranks = cfg.trainer.n_gpus_per_node * cfg.trainer.nnodes
    assert actor.ppo_mini_batch_size * rollout.n % student_ranks == 0  # no padding, no assertion at the first update
    assert actor.ppo_mini_batch_size == cfg.data.train_batch_size and actor.ppo_epochs == 1  # 1 update/step
    assert (cfg.data.max_prompt_length, cfg.data.max_response_length) == (2048, 16384)
    assert cfg.data.apply_chat_template_kwargs.enable_thinking is False
    assert cfg.trainer.total_epochs == 3
    assert cfg.trainer.use_v1 and cfg.trainer.v1.trainer_mode == "sync" and cfg.trainer.device == "cuda"

    # vLLM for the student's rollouts and for the teacher, which has a resource pool of its own
    teacher = cfg.distillation.teacher_models.teacher_model
    assert rollout.name == "vllm" and teacher.inference.name == "vllm"
    assert cfg.distillation.enabled and cfg.distillation.teacher_key == "data_source"
    assert cfg.trainer.nnodes == cfg.distillation.nnodes == nodes
    assert cfg.trainer.n_gpus_per_node + cfg.distillation.n_gpus_per_node == GPUS_PER_NODE
    assert rollout.max_model_len >= cfg.data.max_prompt_length + cfg.data.max_response_length
    loss = cfg.distillation.distillation_loss
    assert (loss.loss_mode, loss.use_policy_gradient, loss.use_task_rewards) == ("k1", True, False)

    # no critic, no reference model: OPD needs neither
    from verl.trainer.ppo.utils import need_critic, need_reference_policy

    assert not need_critic(cfg) and not need_reference_policy(cfg)


def test_the_two_examples_differ_only_in_layout(examples):
    one = dict(leaves(OmegaConf.create(OmegaConf.to_container(examples[1], resolve=False))))
    two = dict(leaves(OmegaConf.create(OmegaConf.to_container(examples[2], resolve=False))))
    assert one.keys() == two.keys()
    differ = {key for key in one if one[key] != two[key]}
    assert differ == {"trainer.nnodes", "distillation.nnodes", "trainer.experiment_name"}


@pytest.mark.parametrize("nodes", sorted(NAMES))
def test_verl_and_effopd_checks_accept_the_composed_config(nodes, examples):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import omega_conf_to_dataclass, validate_config
    from verl.workers.config import DistillationConfig

    from effopd_verl.integration.checks import check_run_config

    cfg = examples[nodes]
    resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert resolved["distillation"]["teacher_models"]["teacher_model"]["inference"]["name"] == "vllm"
    check_run_config(cfg)
    validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    distillation = omega_conf_to_dataclass(cfg.distillation)  # as verl's trainer does (trainer_base.py)
    assert isinstance(distillation, DistillationConfig)
    # verl sizes the teacher pool: replicas x TP must fill distillation.n_gpus_per_node x nnodes
    (teacher,) = distillation.teacher_models.values()
    assert teacher.world_size == cfg.distillation.n_gpus_per_node * nodes
    assert teacher.inference.response_length == 1  # verl asks the teacher for prompt log-probs only


@pytest.mark.parametrize("nodes", sorted(NAMES))
def test_paths_are_required_and_come_from_the_command_line_or_the_environment(nodes, monkeypatch):
    for var in REQUIRED_PATHS.values():
        monkeypatch.delenv(var, raising=False)
    cfg = compose_example(nodes)
    for key, var in REQUIRED_PATHS.items():
        parent, _, leaf = key.rpartition(".")
        assert OmegaConf.is_interpolation(OmegaConf.select(cfg, parent), leaf), key
        with pytest.raises(Exception, match=var):
            OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    monkeypatch.setenv("EFFOPD_STUDENT_MODEL", "/models/student")
    assert compose_example(nodes).actor_rollout_ref.model.path == "/models/student"
    assert compose_example(nodes, *FILLED).actor_rollout_ref.model.path == "/models/Qwen3-1.7B"


SECRET_KEY = re.compile(r"(api[_-]?key|secret|password|passwd|token)\s*$", re.I)
SECRET_TEXT = re.compile(r"(WANDB_API_KEY|HF_TOKEN|api[_-]?key|password|secret|token)\s*[:=]\s*\S", re.I)


@pytest.mark.parametrize("nodes", sorted(NAMES))
def test_no_secret_is_written_in_an_example(nodes):
    path = EXAMPLES / f"{NAMES[nodes]}.yaml"
    assert not SECRET_TEXT.search(path.read_text())
    for key, value in leaves(own_yaml(path)):
        assert not SECRET_KEY.search(key.rsplit(".", 1)[-1]) or value is None, key


def test_the_launch_command_of_the_header_composes_through_effopd_train():
    """`effopd-train --config-name examples/<name> ...` as the header says (hydra prints, nothing runs)."""
    header = (EXAMPLES / f"{NAMES[1]}.yaml").read_text().split("\nhydra:")[0]
    command = re.search(r"#   (effopd-train .*?)\n#\n", header, re.S).group(1)
    argv = [arg for arg in command.replace("\\\n#", " ").split() if arg]
    assert argv[:3] == ["effopd-train", "--config-name", f"examples/{NAMES[1]}"]
    out = subprocess.run(
        [sys.executable, "-m", "effopd_verl.main", *argv[1:], "--cfg", "job", "--resolve"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    printed = OmegaConf.create(out.stdout)
    assert printed.actor_rollout_ref.model.path == "/shared/models/Qwen3-1.7B"
    assert printed.distillation.teacher_models.teacher_model.model_path == "/shared/models/Qwen3-4B"
    assert printed.effopd.enable is True and printed.trainer.n_gpus_per_node == 6
