"""rnnlab's benchmarks against the baselines users would otherwise run (see common.py for the
rules). One module per workload, each runnable as ``python benchmarks/<name>.py [--quick]``;
``rnnlab bench [--quick]`` runs them all (src/rnnlab/bench.py)."""
