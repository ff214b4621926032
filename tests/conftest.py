"""Markers: `slow` (paper-scale) runs only with RNNLAB_SLOW=1; `gpu` only where JAX sees a GPU.

The test process is rnnlab's own, like the `rnnlab` command: it keeps compiled XLA programs in
rnnlab's persistent cache (importing rnnlab alone does not). float64 is NOT switched on
globally: rnnlab's calls switch it on themselves; tests whose own JAX code needs float64 use
the `float64` fixture."""
import os

import pytest

import rnnlab
from rnnlab._jaxcfg import use_compilation_cache

os.environ.setdefault("RNNLAB_PROGRESS", "0")
use_compilation_cache()


@pytest.fixture
def float64():
    """float64 on for this test's own JAX code (rnnlab.float64(), thread-local)."""
    with rnnlab.float64():
        yield


def pytest_collection_modifyitems(config, items):
    slow = os.environ.get("RNNLAB_SLOW") == "1"
    gpu = None
    for item in items:
        if "slow" in item.keywords and not slow:
            item.add_marker(pytest.mark.skip(reason="paper-scale check: set RNNLAB_SLOW=1 (make test-all)"))
        if "gpu" in item.keywords:
            if gpu is None:
                from rnnlab.device import gpu_available
                gpu = gpu_available()
            if not gpu:
                item.add_marker(pytest.mark.skip(reason="no CUDA GPU visible to JAX"))
