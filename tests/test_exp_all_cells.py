"""Every experiment runs with the cells beyond the papers (lstm, ugrnn, mingru) beside the
papers' own, at tiny scale: tables hold a row for every cell, claims come out. Slow (all 14: 2 min on 2
cores with a warm compilation cache, several more cold): run with RNNLAB_SLOW=1 (make test-all)."""
import pytest

import rnnlab  # noqa: F401
from rnnlab import experiments

BEYOND = ["lstm", "ugrnn", "mingru"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in experiments.names() if "cells" in experiments.get(n).default_config("tiny")])
def test_experiment_runs_with_every_cell(name, tmp_path):
    mod = experiments.get(name)
    own = ["rnn-sigmoid", "gru-s"] if mod.PAPER == "sterin" else ["rnn-tanh", "gru"]
    res = experiments.run(name, {"cells": own + BEYOND}, scale="tiny", out=tmp_path, progress=False)
    cells = set()
    for df in res.tables.values():
        if "cell" in df:
            cells |= set(df["cell"].unique())
    assert set(own + BEYOND) <= cells, (name, sorted(cells))
    assert res.claims and all(c.verdict in ("holds", "fails", "inconclusive") for c in res.claims)
