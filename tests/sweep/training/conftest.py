"""Training tests run torch on one thread: as fast as two here, and not slowed by a busy machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    # on a busy 2-core machine: 247 s with torch's default 2 threads, 27 s with one (measured)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
