"""Fixtures of the real-LM tests: the converted base model and a quick build, both cached in the cache folder
(``$EFFOPD_CACHE``, default ``~/.cache/effopd-verl``), so a second session pays for neither."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smollm2_base() -> Path:
    """The converted SmolLM2-135M-Instruct folder (first time: a 93 MB download and the conversion)."""
    from effopd_verl.lm.base import base_model

    return base_model()


@pytest.fixture(scope="session")
def lm_quick_assets(smollm2_base, tmp_path_factory: pytest.TempPathFactory):
    """The quick build of the ``succ`` task (4 supervised steps, small splits), linked into a temp folder."""
    from effopd_verl.lm.build import build_lm_assets

    return build_lm_assets(tmp_path_factory.mktemp("lm") / "succ", task="succ", seed=0, quick=True)
