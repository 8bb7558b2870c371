"""scripts/launch_ray_cluster.sh: argument checks and the exact `ray` commands, without starting Ray.

A stand-in `ray` executable (the script's $RAY) records its arguments and answers `--version` with
$FAKE_RAY_VERSION; a stand-in `hostname` feeds the address detection. One test runs the installed
`ray --version` (with --dry-run).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "launch_ray_cluster.sh"
MIN_RAY = re.search(r"^MIN_RAY_VERSION=(\S+)$", SCRIPT.read_text(), re.M).group(1)


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def sandbox(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "ray", '#!/bin/sh\n'
                                'if [ "$1" = --version ]; then echo "ray, version $FAKE_RAY_VERSION"; exit 0; fi\n'
                                'printf "%s\\0" "$@" > "$FAKE_RAY_LOG"\n'
                                'printf "%s" "${RAY_AUTH_MODE:-}" > "$FAKE_RAY_LOG.auth"\n')
    executable(bin_dir / "hostname", '#!/bin/sh\necho "$FAKE_HOSTNAME_I"\n')
    executable(bin_dir / "effopd-train", '#!/bin/sh\npwd > "$FAKE_TRAIN_LOG"\nprintf "%s\\0" "$@" >> "$FAKE_TRAIN_LOG"\n')
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(home),  # no ~/.ray/auth_token
        "RAY": str(bin_dir / "ray"),
        "FAKE_RAY_LOG": str(tmp_path / "ray.log"),
        "FAKE_TRAIN_LOG": str(tmp_path / "train.log"),
        "FAKE_HOSTNAME_I": "203.0.113.7 172.17.0.4 10.9.8.7",
        "FAKE_RAY_VERSION": MIN_RAY,
    }

    class Sandbox:
        path = tmp_path

        def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
            self.ray_log.unlink(missing_ok=True)
            return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                                  env={**env, **extra_env}, cwd=tmp_path)

        ray_log = tmp_path / "ray.log"

        def ray_argv(self) -> list[str] | None:
            if not self.ray_log.exists():
                return None
            return self.ray_log.read_text().split("\0")[:-1]

        def refused(self, *args: str, **extra_env: str) -> str:
            out = self.run(*args, **extra_env)
            assert out.returncode == 2, out
            assert self.ray_argv() is None  # nothing was started
            assert out.stderr.startswith("launch_ray_cluster.sh: error: ") or "error:" in out.stderr
            return out.stderr

    return Sandbox()


def test_bash_syntax_and_shellcheck():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    out = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_header_says_where_the_job_api_listens():
    header = SCRIPT.read_text().split("set -euo pipefail")[0]
    assert "PRIVATE address, never" in header and "to all interfaces" in header
    assert "run any command on every node" in header


# ------------------------------------------------------------------------------------------- ray version


def test_the_ray_floor_is_the_release_that_binds_the_agents_to_the_node_address():
    # ray-project/ray#55431 (HTTP) and #55732 (gRPC) are first released in 2.50.0; 2.49.x binds 0.0.0.0
    assert MIN_RAY == "2.50.0"
    assert f'"ray[default]>={MIN_RAY}"' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("command", [["head", "--ip", "10.1.2.3"], ["worker", "--head-ip", "10.1.2.3", "--ip", "10.1.2.4"]])
@pytest.mark.parametrize("old", ["2.49.2", "2.41.0", "2.5.1", "1.13.0"])
def test_older_ray_is_refused_before_anything_starts(sandbox, command, old):
    err = sandbox.refused(*command, FAKE_RAY_VERSION=old)
    assert f"Ray {old} is installed; this script needs Ray >= 2.50.0" in err
    assert "to all interfaces (0.0.0.0)" in err and "job agent" in err
    assert "pip install 'ray[default]>=2.50.0'" in err


@pytest.mark.parametrize("version", ["2.50.0", "2.58.0", "2.100.0", "3.0.0.dev0"])
def test_ray_at_or_above_the_floor_is_accepted(sandbox, version):
    out = sandbox.run("head", "--ip", "10.1.2.3", FAKE_RAY_VERSION=version)
    assert out.returncode == 0, out.stderr
    assert sandbox.ray_argv()[:2] == ["start", "--head"]


def test_missing_or_unreadable_ray_is_refused(sandbox):
    err = sandbox.refused("head", "--ip", "10.1.2.3", RAY=str(sandbox.path / "no-such-ray"))
    assert "could not run" in err and "pip install 'ray[default]>=2.50.0'" in err
    assert "could not read Ray's version" in sandbox.refused("head", "--ip", "10.1.2.3", FAKE_RAY_VERSION="unknown")


def test_the_installed_ray_passes_the_version_check(sandbox):
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        pytest.skip("no ray executable next to this Python or on PATH")
    out = sandbox.run("head", "--ip", "10.1.2.3", "--dry-run", RAY=ray)
    assert out.returncode == 0, out.stderr
    assert "--dashboard-host=10.1.2.3" in out.stdout


# ------------------------------------------------------------------------------------------- head


def test_head_binds_dashboard_and_job_api_to_the_private_address(sandbox):
    out = sandbox.run("head", "--ip", "10.1.2.3", "--num-gpus", "8")
    assert out.returncode == 0, out.stderr
    assert sandbox.ray_argv() == ["start", "--head", "--node-ip-address=10.1.2.3", "--port=6379",
                                  "--include-dashboard=true", "--dashboard-host=10.1.2.3", "--dashboard-port=8265",
                                  "--num-gpus=8"]
    assert "http://10.1.2.3:8265 (bound to 10.1.2.3 only, not to all interfaces)" in out.stderr
    assert "can run any code on every node" in out.stderr
    assert "worker --head-ip 10.1.2.3" in out.stderr


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "[::]", "*", "0"])
def test_head_refuses_all_interfaces(sandbox, address):
    assert "means all interfaces" in sandbox.refused("head", "--ip", address)


def test_head_refuses_an_empty_address(sandbox):
    assert "--ip is empty" in sandbox.refused("head", "--ip", "")
    assert "is empty" in sandbox.refused("head", EFFOPD_RAY_IP="")


def test_head_refuses_public_and_malformed_addresses(sandbox):
    assert "is not a private address" in sandbox.refused("head", "--ip", "203.0.113.7")
    assert "is not an IPv4 address" in sandbox.refused("head", "--ip", "10.0.0.256")
    assert "is not an IPv4 address" in sandbox.refused("head", "--ip", "head-node")
    out = sandbox.run("head", "--ip", "203.0.113.7", "--allow-non-private-ip")
    assert out.returncode == 0 and "--dashboard-host=203.0.113.7" in sandbox.ray_argv()


def test_head_address_from_the_environment_or_detected(sandbox):
    assert sandbox.run("head", EFFOPD_RAY_IP="192.168.4.2").returncode == 0
    assert "--dashboard-host=192.168.4.2" in sandbox.ray_argv()
    assert "EFFOPD_RAY_IP=0.0.0.0: 0.0.0.0 means all interfaces" in sandbox.refused("head", EFFOPD_RAY_IP="0.0.0.0")
    out = sandbox.run("head")  # hostname -I: a public address first, then private ones
    assert out.returncode == 0 and "detected this machine's private address: 172.17.0.4" in out.stderr
    assert "--dashboard-host=172.17.0.4" in sandbox.ray_argv()
    err = sandbox.refused("head", FAKE_HOSTNAME_I="203.0.113.7 127.0.0.1")
    assert "found no private IPv4 address on this machine; pass --ip ADDR" in err


def test_head_refuses_ray_arguments_that_rebind(sandbox):
    for extra in ("--dashboard-host=0.0.0.0", "--node-ip-address=0.0.0.0", "--ray-debugger-external"):
        assert "is set by this script" in sandbox.refused("head", "--ip", "10.1.2.3", "--", extra)
    out = sandbox.run("head", "--ip", "10.1.2.3", "--", "--num-cpus=64")
    assert out.returncode == 0 and sandbox.ray_argv()[-1] == "--num-cpus=64"


def test_bad_options(sandbox):
    assert "--port 0 is not a port number" in sandbox.refused("head", "--ip", "10.1.2.3", "--port", "0")
    assert "--dashboard-port x is not a port number" in sandbox.refused("head", "--ip", "10.1.2.3",
                                                                        "--dashboard-port", "x")
    assert "head: unknown option '--dashboard-host'" in sandbox.refused("head", "--dashboard-host", "0.0.0.0")
    assert "unknown command 'start'" in sandbox.refused("start")
    assert "--ip needs an address" in sandbox.refused("head", "--ip")


def test_token_auth(sandbox):
    assert "--token-auth needs a token" in sandbox.refused("head", "--ip", "10.1.2.3", "--token-auth")
    out = sandbox.run("head", "--ip", "10.1.2.3", "--token-auth", RAY_AUTH_TOKEN="s3cr3t-value")
    assert out.returncode == 0
    assert (sandbox.path / "ray.log.auth").read_text() == "token"  # ray started with RAY_AUTH_MODE=token
    assert "s3cr3t-value" not in out.stdout + out.stderr  # the token is never printed
    assert "holds the token" in out.stderr


# ------------------------------------------------------------------------------------------- worker


def test_worker(sandbox):
    out = sandbox.run("worker", "--head-ip", "10.1.2.3", "--ip", "10.1.2.4")
    assert out.returncode == 0, out.stderr
    assert sandbox.ray_argv() == ["start", "--address=10.1.2.3:6379", "--node-ip-address=10.1.2.4"]
    assert "bind to 10.1.2.4, not to all interfaces" in out.stderr
    assert "--head-ip ADDR (the head's private address) is required" in sandbox.refused("worker", "--ip", "10.1.2.4")
    assert "--head-ip 0.0.0.0 means all interfaces" in sandbox.refused("worker", "--head-ip", "0.0.0.0")
    assert "--ip 0.0.0.0 means all interfaces" in sandbox.refused("worker", "--head-ip", "10.1.2.3",
                                                                  "--ip", "0.0.0.0")


# ------------------------------------------------------------------------------------------- submit


def test_submit_runs_effopd_train_in_the_run_dir_with_the_arguments_intact(sandbox):
    run_dir = sandbox.path / "runs dir"
    run_dir.mkdir()
    train_args = ["--config-name", "examples/qwen3_1p7b_student_qwen3_4b_teacher_deepmath_1node",
                  "data.train_files=/data/it's here/train.parquet", "trainer.logger=[console,file]", "$HOME"]
    out = sandbox.run("submit", "--head-ip", "10.1.2.3", "--run-dir", str(run_dir), "--no-wait", "--", *train_args)
    assert out.returncode == 0, out.stderr
    argv = sandbox.ray_argv()
    assert argv[:4] == ["job", "submit", "--address=http://10.1.2.3:8265", "--no-wait"]
    assert argv[4] == "--"
    assert "bound to 10.1.2.3 only" in out.stderr
    # what Ray does with the entrypoint on Linux: shlex.join, then /bin/sh
    entrypoint = shlex.join(argv[5:])
    env = {"PATH": f"{sandbox.path / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "FAKE_TRAIN_LOG": str(sandbox.path / "train.log"), "HOME": "/nonexistent"}
    subprocess.run(entrypoint, shell=True, check=True, env=env)
    cwd, args = (sandbox.path / "train.log").read_text().split("\n", 1)
    got = args.split("\0")[:-1]
    assert Path(cwd) == run_dir
    # Ray's workers run where `ray start` ran, not in the run folder: checkpoints get an absolute path
    ckpt = f"trainer.default_local_dir={run_dir}/checkpoints/${{trainer.project_name}}/${{trainer.experiment_name}}"
    assert got == [*train_args, ckpt]


def test_submit_keeps_a_given_checkpoint_folder_and_the_default_composes(sandbox):
    assert sandbox.run("submit", "--head-ip", "10.1.2.3", "--run-dir", "/shared/runs/", "--",
                       "+trainer.default_local_dir=/ckpt").returncode == 0
    assert sandbox.ray_argv()[-1] == "+trainer.default_local_dir=/ckpt"
    assert sandbox.run("submit", "--head-ip", "10.1.2.3", "--run-dir", "/shared/runs/", "--", "x=1").returncode == 0
    override = sandbox.ray_argv()[-1]
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="effopd_verl.configs", version_base=None):
        cfg = compose(config_name="examples/qwen3_1p7b_student_qwen3_4b_teacher_deepmath_1node", overrides=[override])
    assert cfg.trainer.default_local_dir == "/shared/runs/checkpoints/effopd/qwen3_1p7b_from_qwen3_4b_deepmath_1node"


def test_submit_checks(sandbox):
    assert "--head-ip 0.0.0.0 means all interfaces" in sandbox.refused(
        "submit", "--head-ip", "0.0.0.0", "--", "--config-name", "x")
    assert "--head-ip is empty" in sandbox.refused("submit", "--head-ip", "", "--", "--config-name", "x")
    assert "give effopd-train's arguments after --" in sandbox.refused("submit", "--head-ip", "10.1.2.3")
    assert "give effopd-train's arguments after --" in sandbox.refused("submit", "--head-ip", "10.1.2.3", "--")
    assert "must be an absolute path" in sandbox.refused("submit", "--head-ip", "10.1.2.3", "--run-dir", "runs",
                                                         "--", "x=1")
    assert "effopd-train's arguments go after --" in sandbox.refused("submit", "--head-ip", "10.1.2.3",
                                                                     "--config-name", "x")


@pytest.mark.parametrize("secret", ["+trainer.wandb_api_key=abc", "WANDB_API_KEY=abc", "+x.HF_TOKEN=abc",
                                    "+logger.password=abc", "+x.secret_key=abc"])
def test_submit_refuses_secrets_on_the_command_line(sandbox, secret):
    err = sandbox.refused("submit", "--head-ip", "10.1.2.3", "--", "--config-name", "x", secret)
    assert "looks like a secret" in err and "abc" not in err


def test_submit_accepts_settings_whose_names_only_resemble_secrets(sandbox):
    ok = ["distillation.teacher_key=data_source", "actor_rollout_ref.rollout.max_num_batched_tokens=32768",
          "data.tokenizer=null", "data.prompt_key=prompt"]
    assert sandbox.run("submit", "--head-ip", "10.1.2.3", "--", *ok).returncode == 0
    assert sandbox.ray_argv()[-len(ok) - 1:-1] == ok
