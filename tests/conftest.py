"""Fixtures shared across the test folders."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def toy_assets(tmp_path_factory: pytest.TempPathFactory):
    """The toy task, quick build (`add`, seed 0; seconds), built once per session.

    ``EFFOPD_TOY_ASSETS=/some/folder`` keeps the build there and reuses it in later sessions.
    """
    from effopd_verl.toy.build import build_assets

    out = os.environ.get("EFFOPD_TOY_ASSETS") or str(tmp_path_factory.mktemp("toy") / "add")
    return build_assets(out, task="add", seed=0, quick=True)
