# Sourced by scripts/demo.sh and scripts/test.sh: create or reuse ./.venv and install the package.
#
# torch is installed first, pinned to the CPU build these machines carry (2.13.0), so that nothing
# later pulls a multi-GB CUDA build. Set EFFOPD_TORCH_SPEC to choose another (e.g. on a GPU box).
# The install is skipped when pyproject.toml has not changed since the last one (.venv/.effopd-stamp).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
extras="${1:-test}"
if [ ! -x .venv/bin/python ]; then
    echo "[effopd] creating .venv"
    python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
stamp=".venv/.effopd-stamp"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) [$extras]"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[effopd] installing into .venv (first time: a few minutes)"
    python -m pip install -q --upgrade pip
    python -c "import torch" 2>/dev/null || python -m pip install -q "${EFFOPD_TORCH_SPEC:-torch==2.13.0}"
    python -m pip install -q -e ".[$extras]"
    echo "$want" > "$stamp"
fi
