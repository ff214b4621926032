"""Markers: `slow` (paper-scale) runs only with RNNLAB_SLOW=1; `gpu` only where JAX sees a GPU."""
import os

import pytest

os.environ.setdefault("RNNLAB_PROGRESS", "0")


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
