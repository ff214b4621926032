"""The two inputs of the (l, k)-discrepancy (Sterin et al. "S", §V, Definition V.1).

Binary alphabet, u = 0 0 ... 0 and v = 1 0 ... 0, both of length l (the ``length`` argument,
default 10). Row 0 is u, row 1 is v. The data are fixed: ``n`` and ``seed`` are checked like
every task's but otherwise ignored, and every split holds the same two rows. The model one-hot
encodes the ids (0 = [1, 0], 1 = [0, 1]). Nothing is trained on them: targets and target_mask
are zero and accept is all False; the measure compares the hidden states after reading u and v.
"""
from __future__ import annotations

import numpy as np

from .base import TaskData, TaskSpec

REFERENCE = "Sterin, Farrugia, Gripon, An Intrinsic Difference Between Vanilla RNNs and GRU " \
            "Models, §V, Definition V.1"


def words(length: int) -> np.ndarray:
    """int32 [2, length]: u = 0...0 and v = 1 0...0."""
    tokens = np.zeros((2, length), np.int32)
    tokens[1, 0] = 1
    return tokens


def _build(n: int, rng: np.random.Generator, length: int) -> TaskData:
    tokens = words(length)
    return TaskData(name="discrepancy", tokens=tokens, lengths=np.full(2, length, np.int32),
                    targets=np.zeros((2, length), np.int32),
                    target_mask=np.zeros((2, length), np.float32),
                    accept=np.zeros((2, length, 2), bool), vocab=2, n_outputs=2,
                    meta={"strings": ["0" * length, "1" + "0" * (length - 1)]})


SPEC = TaskSpec(name="discrepancy", task_id=6, module=__name__, reference=REFERENCE,
                kind="probe", vocab=2, n_outputs=2, default_length=10,
                default_sizes={"test": 2}, build=_build, fixed_rows=2)
