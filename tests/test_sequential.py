"""Sequential runs: rounds of new units reuse every finished shard, never change a stored key,
and spend the claims' error budget over the looks (the error rates are simulated in
test_stats.py)."""
import json

import pytest

import rnnlab.experiments as E
from rnnlab.errors import ConfigError
from rnnlab.experiments import base, capacity_inits, trainability_grid


def test_round_configs_add_new_seeds_and_keep_round_one():
    cfg = E.resolve_config(capacity_inits, "tiny", {"max_rounds": 3, "rounds": 3})
    rounds = base.round_configs(capacity_inits, cfg)
    assert [(c["inits"], c["init_offset"]) for c in rounds] == [(2, 0), (2, 2), (4, 4)]
    plain = E.resolve_config(capacity_inits, "tiny")
    # round 1's shards are exactly the plain run's (same keys in the store)
    assert trainability_grid.grid_shards(rounds[0], 4) == trainability_grid.grid_shards(plain, 4)
    seeds = [set(s["seeds"]) for c in rounds for s in trainability_grid.grid_shards(c, 4)[:1]]
    assert not (seeds[0] & seeds[1]) and not (seeds[1] & seeds[2])
    with pytest.raises(ConfigError, match="^rounds"):
        E.resolve_config(capacity_inits, "tiny", {"rounds": 2})          # more rounds than looks


def test_until_decided_reuses_every_finished_model(tmp_path):
    plain = E.run("capacity-inits", scale="tiny", out=tmp_path, progress=False)
    res = base.run_until_decided("capacity-inits", budget_s=600, max_rounds=2, scale="tiny", out=tmp_path,
                                 progress=False)
    n_shards = len(plain.config["tasks"]) * len(plain.config["cells"]) * len(set(plain.config["hiddens"]))
    if res.config["rounds"] == 2:          # something was undecided after round 1: a second round ran
        assert res.shards_reused == n_shards and res.shards_computed == n_shards
        acc = res.tables["accuracy"]
        assert acc.init.nunique() == 4 and acc.groupby(["task", "cell", "input", "hidden", "init"]).size().max() == 1
        cap = [c for c in res.claims if c.id.startswith("similar-capacity")]
        assert cap and all(c.details["n"] == 4 for c in cap)        # the claims see both rounds' inits
    claims = json.loads((res.out_dir / "claims.json").read_text())
    # every look of a 2-look design is at 97.5%
    assert all(c["details"]["level"] == pytest.approx(0.975) for c in claims if "level" in c["details"])
    again = E.run("capacity-inits", scale="tiny", out=tmp_path, progress=False)
    assert again.run_id == plain.run_id and again.shards_computed == 0     # the plain run is as it was


def test_until_decided_needs_rounds():
    with pytest.raises(ConfigError, match="ROUNDS"):
        base.run_until_decided("update-cosine", scale="tiny")
