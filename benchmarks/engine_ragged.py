"""Old vs new kernel for Sterin et al.'s protocol (plain SGD, one string a step) in the same
run: engine.train.train_epoch (models first, every step scanned over all T padded positions)
and engine.ragged (each step loops only as far as its longest string; hand-written backward),
each as run_epoch runs it, one epoch of the embedded-Reber populations (2000 strings, the
paper's sizes: rnn-sigmoid k=18, gru-s k=10, N(0,1) weights, no biases). Prints per-config
medians of `--repeats` epochs, the ratio old/new and the compile time of each (first call).

    python benchmarks/engine_ragged.py [--n-train 2000] [--repeats 3] [--models 1,6,20]
"""
from __future__ import annotations

import argparse
import os
import time


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", default="1,6,20", help="population sizes, comma list")
    a = ap.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np
    from rnnlab import tasks
    from rnnlab.engine import model as mdl
    from rnnlab.engine import train as tr
    from rnnlab.engine.population import make_population
    from rnnlab.engine.protocols import STERIN
    from rnnlab.experiments.common import model_spec
    train = tasks.splits("embedded-reber", 0, {"train": a.n_train})["train"]
    print(f"{a.n_train} strings, lengths {train.lengths.min()}-{train.lengths.max()} (mean {train.lengths.mean():.1f}), "
          f"padded to {train.tokens.shape[1]}")
    print(f"{'cell':12s} {'H':>3s} {'M':>3s} {'old s':>8s} {'new s':>8s} {'old/new':>8s} {'compile old':>12s} "
          f"{'compile new':>12s}")
    ratios = []
    for cell, h in (("rnn-sigmoid", 18), ("gru-s", 10)):
        for m in (int(x) for x in a.models.split(",")):
            spec = model_spec("embedded-reber", cell, "normal", "float32", False)
            pop = make_population(spec, 7, h, np.arange(m))
            dev = tr.device_data(train, spec.jdtype)
            keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(m))
            args = (spec, tr.epoch_protocol(STERIN), pop.hmax, a.n_train, pop.params,
                    tr.init_opt_state(STERIN, pop.params), pop.mask, jnp.full(m, 1e-3, spec.jdtype),
                    jnp.ones(m, bool), keys, 1, dev)
            kw = {"positions": mdl.scored_positions(train.target_mask),
                  "full_length": mdl.full_length(train.tokens, train.lengths)}
            res = {}
            for eng in ("vmap", "ragged"):
                os.environ["RNNLAB_ENGINE"] = eng
                t0 = time.perf_counter(); jax.block_until_ready(tr.run_epoch(*args, **kw))
                res[eng] = [time.perf_counter() - t0, []]
            for _ in range(a.repeats):                 # interleaved: both see the same machine load
                for eng in ("vmap", "ragged"):
                    os.environ["RNNLAB_ENGINE"] = eng
                    t0 = time.perf_counter(); jax.block_until_ready(tr.run_epoch(*args, **kw))
                    res[eng][1].append(time.perf_counter() - t0)
            os.environ.pop("RNNLAB_ENGINE", None)
            old, new = np.median(res["vmap"][1]), np.median(res["ragged"][1])
            ratios.append(old / new)
            print(f"{cell:12s} {h:3d} {m:3d} {old:8.3f} {new:8.3f} {old / new:7.2f}x {res['vmap'][0]:11.1f}s "
                  f"{res['ragged'][0]:11.1f}s", flush=True)
    print(f"median ratio old/new over {len(ratios)} configs: {np.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
