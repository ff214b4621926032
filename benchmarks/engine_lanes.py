"""Old vs new epoch kernel in the same run: engine.train.train_epoch (models first, vmap) and
engine.lanes (model axis innermost), each as run_epoch runs it (concurrent shards on a
multi-core CPU), one Mehta epoch of a population on the First task. Prints per-config medians
of `--repeats` epochs, the ratio old/new and the compile time of each (first call).

    python benchmarks/engine_lanes.py [--models 96] [--n-train 8000] [--repeats 3] [--quick]
"""
from __future__ import annotations

import argparse
import os
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=int, default=96)
    ap.add_argument("--n-train", type=int, default=8000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="two configs only")
    a = ap.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np
    from rnnlab import tasks
    from rnnlab.engine import model as mdl
    from rnnlab.engine import train as tr
    from rnnlab.engine.population import make_population
    from rnnlab.engine.protocols import MEHTA
    from rnnlab.experiments.common import model_spec
    train = tasks.splits("first", 0, {"train": a.n_train, "val": 10, "test": 10})["train"]
    configs = [("rnn-tanh", 4), ("gru", 4)] if a.quick else \
        [(c, h) for c in ("rnn-tanh", "gru") for h in (2, 4, 8, 16)]
    print(f"{'cell':9s} {'H':>3s} {'old s':>8s} {'new s':>8s} {'old/new':>8s} {'compile old':>12s} {'compile new':>12s}")
    ratios = []
    for cell, h in configs:
        spec = model_spec("first", cell, "torch", "float32")
        pop = make_population(spec, 4, h, np.arange(a.models))
        dev = tr.device_data(train, spec.jdtype)
        nb = -(-a.n_train // MEHTA.batch_size)
        keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(a.models))
        args = (spec, tr.epoch_protocol(MEHTA), pop.hmax, nb, pop.params, tr.init_opt_state(MEHTA, pop.params),
                pop.mask, jnp.full(a.models, 1e-3, spec.jdtype), jnp.ones(a.models, bool), keys, 1, dev)
        kw = {"positions": mdl.scored_positions(train.target_mask),
              "full_length": mdl.full_length(train.tokens, train.lengths)}
        res = {}
        for eng in ("vmap", "lanes"):
            os.environ["RNNLAB_ENGINE"] = eng
            t0 = time.perf_counter(); jax.block_until_ready(tr.run_epoch(*args, **kw)); comp = time.perf_counter() - t0
            res[eng] = [comp, []]
        for _ in range(a.repeats):                     # interleaved: both see the same machine load
            for eng in ("vmap", "lanes"):
                os.environ["RNNLAB_ENGINE"] = eng
                t0 = time.perf_counter(); jax.block_until_ready(tr.run_epoch(*args, **kw))
                res[eng][1].append(time.perf_counter() - t0)
        os.environ.pop("RNNLAB_ENGINE", None)
        old, new = np.median(res["vmap"][1]), np.median(res["lanes"][1])
        ratios.append(old / new)
        print(f"{cell:9s} {h:3d} {old:8.3f} {new:8.3f} {old / new:7.2f}x {res['vmap'][0]:11.1f}s {res['lanes'][0]:11.1f}s",
              flush=True)
    print(f"median ratio old/new over {len(ratios)} configs: {np.median(ratios):.2f}x (target 5x)")


if __name__ == "__main__":
    main()
