"""Every training test runs torch on one thread (see ``one_torch_thread``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _training_on_one_thread(one_torch_thread: None) -> None:
    """Every module here trains in process."""
