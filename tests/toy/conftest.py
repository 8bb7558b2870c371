"""A quick toy build shared by the toy tests (seconds; built once per session)."""

import pytest


@pytest.fixture(scope="session")
def quick_assets(tmp_path_factory):
    from effopd_verl.toy.build import build_assets

    return build_assets(tmp_path_factory.mktemp("toy") / "add", task="add", seed=0, quick=True)
