"""The runnable examples in the core's docstrings stay true."""

import doctest

import pytest

from effopd_verl.core import config, extrapolation, schedule, search


@pytest.mark.parametrize("module", [config, schedule, extrapolation, search])
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
