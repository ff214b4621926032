"""The ``rnnlab`` command.

    rnnlab train --task first --cell gru --input 4 --hidden 4 --inits 30   one population
    rnnlab run EXPERIMENT [--scale quick|paper] [--set key=value ...]        one experiment
    rnnlab reproduce [--paper mehta|sterin|all] [--scale quick|paper]        all of them + report
    rnnlab report [DIR]                                                      (re)write the report
    rnnlab query "SELECT ..." | --tables                                     SQL over the store
    rnnlab list                                                              the experiments
    rnnlab bench [--quick]                                                   benchmarks
    rnnlab check-cell [PLUGIN:]CELL                                          conformance of a cell
    rnnlab compare-cell CELL [--plugin FILE]                                 rank it on the papers' claims

Every command takes ``--plugin PATH_OR_MODULE`` (repeatable): a module that registers cells,
tasks or experiments (also RNNLAB_PLUGINS and the ``rnnlab.plugins`` entry points; see
docs/extending.md). A plugin that fails to import ends the command with status 2 and one line.

Every deliberate error (a bad setting, an unusable results folder, bad SQL) ends the command
with a non-zero status and ONE line on stderr that names the bad field, e.g.
``rnnlab: error: hidden: must be a positive integer, got 0``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

from .errors import ConfigError, PluginError, RnnlabError, RnnlabWarning, StoreError

SCALE_CHOICES = ("quick", "paper", "tiny")
GOOD_ACC = 0.95   # "good" model in the train summary: best validation accuracy >= this


# ------------------------------------------------------------------------ argparse


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``rnnlab: error: FIELD: message``."""

    def error(self, message):
        msg = " ".join(str(message).split())
        if msg.startswith("argument "):
            head, sep, rest = msg[len("argument "):].partition(": ")
            if sep:
                field = head.split("/")[-1].lstrip("-").lower()
                msg = f"{field}: {rest}"
        self.exit(2, f"rnnlab: error: {msg}\n")


def _int_arg(minimum: int = 1, allow_list: bool = False):
    """argparse type: an integer >= minimum (or a comma list of them)."""
    what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"

    def conv(s: str):
        parts = s.split(",") if allow_list else [s]
        vals = []
        for p in parts:
            try:
                v = int(p.strip())
            except ValueError:
                raise argparse.ArgumentTypeError(f"must be {what}, got {s!r}") from None
            if v < minimum:
                raise argparse.ArgumentTypeError(f"must be {what}, got {s}")
            vals.append(v)
        return vals if allow_list else vals[0]
    return conv


def _pos_float(s: str) -> float:
    """argparse type: a finite number > 0 (``1e309`` is infinite in a float: refused)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {s}")
    return v


def _add_device(p):
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                   help="where JAX computes (default auto: a CUDA GPU if JAX sees one)")


def _add_plugin(p, dest="plugins"):
    p.add_argument("--plugin", action="append", default=[], dest=dest, metavar="PATH_OR_MODULE",
                   help="a .py file or module that registers cells, tasks or experiments; repeatable")


def _add_processes(p):
    p.add_argument("--processes", type=_int_arg(1), default=None, metavar="N",
                   help="with --backend local: run shards in N worker processes (RNNLAB_PROCESSES)")


def _add_out(p, default="results"):
    p.add_argument("--out", default=default, metavar="DIR",
                   help=f"results folder (default {default}); the store is DIR/store")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = _Parser(prog="rnnlab", description="Populations of small RNNs: reproduce Mehta and "
                     "Sterin et al. on why gated RNNs train where vanilla ones fail.")
    parser.add_argument("--version", action="version", version=f"rnnlab {__version__}")
    _add_plugin(parser, dest="plugins_top")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)

    p = sub.add_parser("train", help="train one population of models and summarise it",
                       description="Train ONE population: --inits models for every (input, hidden) "
                       "pair, model i of init index j gets seed SEED*1000+j. Results go to the "
                       "store (tables train.summary, train.curves) and are reused on a rerun.")
    p.add_argument("--task", required=True, help="count, first, xor, reber, embedded-reber")
    p.add_argument("--cell", required=True, help="rnn-tanh, gru, rnn-sigmoid, gru-s, lstm")
    p.add_argument("--input", type=_int_arg(1, True), default=[4],
                   help="embedding size(s), e.g. 4 or 2,4 (ignored by the one-hot Reber tasks)")
    p.add_argument("--hidden", type=_int_arg(1, True), default=[4], help="hidden size(s), e.g. 4 or 2,4,8")
    p.add_argument("--inits", type=_int_arg(1), default=10, help="models per size (default 10)")
    p.add_argument("--seed", type=_int_arg(0), default=0,
                   help="data seed; model seeds are SEED*1000 + init index (default 0)")
    p.add_argument("--protocol", choices=("mehta", "sterin"), default=None,
                   help="training protocol (default: mehta for count/first/xor, sterin for Reber)")
    p.add_argument("--init", choices=("torch", "normal", "xavier", "uniform"), default=None,
                   help="init scheme (default: torch for count/first/xor, normal for Reber)")
    p.add_argument("--epochs", type=_int_arg(1), default=None, help="max epochs (default: the protocol's)")
    p.add_argument("--lr", type=_pos_float, default=None, help="learning rate (default: the protocol's)")
    p.add_argument("--train-size", type=_int_arg(1), default=None, help="training sequences (default: the task's)")
    p.add_argument("--val-size", type=_int_arg(1), default=None, help="validation sequences (default: the task's)")
    p.add_argument("--test-size", type=_int_arg(1), default=None, help="test sequences (default: the task's)")
    p.add_argument("--force", action="store_true", help="train again even if the result is stored")
    _add_out(p)
    _add_device(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="run one experiment (reusing stored results)")
    p.add_argument("experiment", metavar="EXPERIMENT", help="an experiment name (see rnnlab list)")
    p.add_argument("--scale", choices=SCALE_CHOICES, default=None,
                   help="quick (default: minutes), paper (the paper's settings); tiny is for tests")
    p.add_argument("--seed", type=_int_arg(0), default=None, help="the experiment's seed")
    p.add_argument("--cells", default=None, help="comma list of cells, e.g. rnn-tanh,gru,lstm")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key (value parsed as JSON when possible); repeatable")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="JSON file of config overrides (a run's config.json works too)")
    _add_out(p)
    p.add_argument("--force", action="store_true", help="recompute the run's outputs")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="where shards run")
    p.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    _add_processes(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--until-decided", action="store_true",
                   help="add inits/draws in rounds (new seeds, every finished model reused) until every claim "
                        "is decided, the rounds (--max-rounds) or the --budget are spent")
    p.add_argument("--budget", default="10m", metavar="TIME", help="wall-time budget of --until-decided (e.g. 10m)")
    p.add_argument("--max-rounds", type=_int_arg(1), default=4, help="looks of --until-decided (alpha is split)")
    _add_device(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("reproduce", help="run every experiment of the paper(s), then write the report")
    p.add_argument("--paper", choices=("mehta", "sterin", "beyond", "all"), default="all")
    p.add_argument("--scale", choices=SCALE_CHOICES, default="quick")
    _add_out(p)
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    _add_processes(p)
    p.add_argument("--jobs", type=_int_arg(1), default=None, metavar="N",
                   help="with --backend local: run N experiments at once in worker processes, each on "
                        "its own cores (default RNNLAB_JOBS, else one per core up to 4 on a CPU; 1 on a GPU)")
    _add_device(p)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("report", help="(re)write DIR/report.html and DIR/report.md")
    p.add_argument("dir", nargs="?", default="results", metavar="DIR", help="results folder (default results)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("query", help="run SQL over the store, e.g. SELECT * FROM train_summary")
    p.add_argument("sql", nargs="?", default=None, metavar="SQL")
    p.add_argument("--tables", action="store_true", help="list the tables and their SQL names")
    p.add_argument("--max-rows", type=_int_arg(1), default=500, help="rows printed at most (default 500)")
    _add_out(p)
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("list", help="the experiments, with paper and source")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("bench", help="benchmarks (rnnlab.bench)")
    p.add_argument("--quick", action="store_true", help="small sizes")
    _add_device(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("check-cell", help="run the conformance suite on a cell (e.g. your plugin's)",
                       description="Checks a registered cell against the cell contract: parameter "
                       "shapes, seeded init, finite-difference gradients (float64), padding-mask "
                       "invariance, population equals solo. Prints every check; exit 1 if any fails.")
    p.add_argument("target", metavar="[PLUGIN:]CELL",
                   help="a cell name, or PLUGIN:CELL to load the plugin (file or module) first")
    p.set_defaults(func=cmd_check_cell)

    p = sub.add_parser("compare-cell", help="rank a cell against rnn-tanh, gru and lstm on the papers' claims",
                       description="Runs every experiment of both papers that takes --cells with the "
                       "baselines and CELL, into OUT/compare-CELL/, ranks the cells on every claim "
                       "that compares a cell with the first baseline, and writes the ranking into "
                       "OUT/report.html.")
    p.add_argument("cell", metavar="CELL", help="the cell to rank (e.g. from --plugin)")
    p.add_argument("--against", default="rnn-tanh,gru,lstm",
                   help="comma list of baselines; the first is the vanilla reference (default rnn-tanh,gru,lstm)")
    p.add_argument("--experiments", default=None,
                   help="comma list of experiments (default: every applicable one of both papers)")
    p.add_argument("--scale", choices=SCALE_CHOICES, default="quick")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key of every experiment that has it; repeatable")
    _add_out(p)
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    _add_processes(p)
    _add_device(p)
    p.set_defaults(func=cmd_compare_cell)
    for p in sub.choices.values():
        _add_plugin(p)
    return parser


# ---------------------------------------------------------------------------- helpers


def _out_dir(out: str) -> Path:
    """The results folder, created if needed; one-line errors for a file or an unwritable one."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"out: {out} is a file, not a folder")
    return path


def _open_store(out: str, create: bool = True):
    from .store import Store
    path = _out_dir(out)
    if not create and not (path / "store").is_dir():
        raise StoreError(f"out: no results store in {out} (nothing has been run there yet)")
    try:
        return Store(path / "store", create=create)
    except StoreError as e:
        raise StoreError(f"out: {e}") from None


def _select_device(device: str) -> str:
    from . import device as dev
    return dev.select(device)


def _fmt(x) -> str:
    from .report.build import fmt_num
    return fmt_num(x)


def _interval(iv) -> str:
    from .report.build import fmt_interval
    return fmt_interval(iv)


def _wall(s) -> str:
    from .report.build import fmt_wall
    return fmt_wall(s)


def _progress_enabled() -> bool:
    return os.environ.get("RNNLAB_PROGRESS", "1") != "0"


def _print_table(rows, headers) -> None:
    """Left-aligned plain-text table."""
    rows = [[str(x) for x in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    print(line(headers))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


def _print_frame(df, **kw) -> None:
    import pandas as pd
    with pd.option_context("display.width", 250, "display.max_columns", 50,
                           "display.max_colwidth", 60):
        print(df.to_string(**kw))


# ------------------------------------------------------------------------------ train

TRAIN_VERSION = 1


def cmd_train(args) -> int:
    from . import cells, tasks
    spec = tasks.get(args.task)
    if spec.kind == "probe":
        trainable = [n for n, s in tasks.TASKS.items() if s.kind != "probe"]
        raise ConfigError(f"task: {args.task!r} is a probe, not a training task; "
                          f"choose from {', '.join(trainable)}")
    cells.get(args.cell)
    seq = spec.kind == "next-symbol"          # the Reber tasks: one-hot input (common.SEQUENCE_TASKS)
    protocol = args.protocol or ("sterin" if seq else "mehta")
    init = args.init or ("normal" if seq else "torch")
    sizes = dict(spec.default_sizes)
    for split, v in (("train", args.train_size), ("val", args.val_size), ("test", args.test_size)):
        if v is not None:
            sizes[split] = v
    if "val" not in sizes:
        raise ConfigError("val-size: the task has no default validation split; give --val-size")
    inputs = [spec.vocab] if seq else list(args.input)
    store = _open_store(args.out)
    platform = _select_device(args.device)

    grid = [(i, h) for i in inputs for h in args.hidden]
    shard = {
        "task": args.task, "task_seed": args.seed, "cell": args.cell, "init": init,
        "sizes": [[i, h] for (i, h) in grid for _ in range(args.inits)],
        "seeds": [args.seed * 1000 + j for _ in grid for j in range(args.inits)],
        "protocol": protocol,
        "protocol_overrides": {} if args.lr is None else {"lr": args.lr},
        "max_epochs": args.epochs, "data_sizes": sizes, "snapshots": False,
    }
    from .store import canonical, config_hash
    key = config_hash({"command": "train", "version": TRAIN_VERSION, "shard": shard})
    m = len(shard["seeds"])
    print(f"train: {m} model(s) of {args.cell} on {args.task} "
          f"(input {','.join(map(str, inputs))} x hidden {','.join(map(str, args.hidden))}, "
          f"{args.inits} init(s) each), protocol {protocol}, init {init}, data {sizes}, "
          f"on {platform}; key {key}")

    t0 = time.perf_counter()
    with store.lock(f"train-{key}"):
        # a damaged stored file is moved to quarantine (one warning line) and trained again
        summary = None if args.force else store.reuse("train.summary", key)
        if summary is not None and not store.intact("train.curves", key):
            summary = None
        if summary is not None:
            print(f"reusing the stored result train.summary/{key} (add --force to train again)")
        else:
            from .experiments.common import train_population
            res, _ = train_population(shard, progress=f"train {args.cell}" if _progress_enabled() else False)
            cols = {"key": key, "task": args.task, "init": init, "protocol": protocol,
                    "task_seed": args.seed}
            summary = res.summary.assign(**cols)
            curves = res.curves.assign(cell=args.cell, **cols)
            meta = {"shard": canonical(shard)}
            store.write("train.curves", key, curves, meta=meta)
            store.write("train.summary", key, summary, meta=meta)   # last: marks completion
            store.record_run(f"train-{key}", {"experiment": "train", "config": shard, "status": "done",
                                              "finished": time.time(), "wall_s": res.wall_s})
    wall = time.perf_counter() - t0

    show = summary[["model", "seed", "input", "hidden", "best_val_acc", "test_acc", "best_epoch",
                    "epochs", "status"]]
    _print_frame(show, index=False, float_format=lambda v: f"{v:.4f}")
    best = summary["best_val_acc"].astype(float)
    good = int((best >= GOOD_ACC).sum())
    top = summary.loc[best.idxmax()]
    print(f"{m} models: best val acc median {best.median():.4f}, max {best.max():.4f} "
          f"(test acc {float(top['test_acc']):.4f}); {good}/{m} reach >= {GOOD_ACC:.2f}; {_wall(wall)}")
    print(f"stored in {store.root} as train.summary / train.curves, key {key}; e.g. "
          f"rnnlab query \"SELECT * FROM train_summary WHERE key='{key}'\" --out {args.out}")
    return 0


# -------------------------------------------------------------------------------- run


def _parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _load_config_file(path: str) -> tuple[dict, str | None]:
    """(overrides, scale or None) from a JSON file: either a plain object of config keys, or a
    run's config.json ({"experiment": ..., "config": {...}})."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"config: cannot read {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config: {path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                          f"offset {e.start}); save it as UTF-8 JSON") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ConfigError(f"config: {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config: {path} must hold a JSON object of config keys")
    if "experiment" in data and isinstance(data.get("config"), dict):
        data = dict(data["config"])
    data = dict(data)
    scale = data.pop("scale", None)
    return data, scale


def run_config(args) -> tuple[dict, str]:
    """The overrides and scale a `run` command asks for: --config, then --seed/--cells/--set."""
    config, scale = ({}, None) if args.config is None else _load_config_file(args.config)
    if args.seed is not None:
        config["seed"] = args.seed
    if args.cells is not None:
        config["cells"] = [c.strip() for c in args.cells.split(",") if c.strip()]
    for item in args.set:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"set: expected KEY=VALUE, got {item!r}")
        config[k.strip()] = _parse_value(v)
    if "cells" in config:
        from .experiments.base import check_cells
        check_cells(config["cells"])
    scale = args.scale or scale or "quick"
    if scale not in SCALE_CHOICES:
        raise ConfigError(f"scale: unknown scale {scale!r}; known: quick, paper")
    return config, scale


def _check_backend(args) -> None:
    if args.address and args.backend != "ray":
        raise ConfigError("address: only used with --backend ray")
    if getattr(args, "processes", None) and args.backend != "local":
        raise ConfigError("processes: only used with --backend local (Ray runs every shard in a worker)")


def _backend(args):
    """The backend object of --backend/--address/--processes (the caller closes it)."""
    from . import backends
    if args.backend == "local":
        return backends.get("local", processes=getattr(args, "processes", None))
    return backends.get(args.backend, args.address)


def _print_claims(claims) -> None:
    if not claims:
        print("(no claims)")
        return
    rows = [(c.id, c.verdict.upper() if c.verdict == "fails" else c.verdict, _fmt(c.value),
             _interval(c.interval)) for c in claims]
    _print_table(rows, ["claim", "verdict", "value", "interval"])
    for c in claims:
        if c.verdict == "fails":
            print(f"Our run does NOT reproduce claim {c.id}: {c.text}")
        elif c.verdict == "inconclusive" and c.details.get("reason"):
            sug = c.details.get("suggested_config") or {"units": c.details.get("n_to_decide")}
            print(f"{c.id} is undecided: {c.details['reason']}; the power estimate says "
                  + ", ".join(f"{k}={v}" for k, v in sug.items()) + " would decide it (--until-decided adds them)")


def _duration(text: str) -> float:
    """Seconds from '90', '90s', '10m' or '1.5h'."""
    t = str(text).strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
    try:
        v = float(t[:-1]) * mult if mult else float(t)
    except ValueError:
        v = float("nan")
    if not v > 0:
        raise ConfigError(f"budget: expected a duration such as 600, 90s, 10m or 1h, got {text!r}")
    return v


def cmd_run(args) -> int:
    config, scale = run_config(args)
    _check_backend(args)
    store = _open_store(args.out)
    platform = _select_device(args.device)
    from . import experiments
    mod = experiments.get(args.experiment)
    cfg = experiments.resolve_config(mod, scale, config)   # unknown keys / bad values: one line
    print(f"{mod.NAME} ({mod.PAPER}, {mod.SOURCE}) at scale {scale} on {platform}")
    print("config: " + json.dumps(cfg, default=str))
    be = _backend(args)
    kw = dict(scale=scale, out=args.out, store=store, backend=be,
              progress=not args.quiet and _progress_enabled(), force=args.force)
    try:
        if args.until_decided:
            from .experiments.base import run_until_decided
            res = run_until_decided(mod.NAME, config, budget_s=_duration(args.budget), max_rounds=args.max_rounds, **kw)
            print(f"until-decided: {res.config.get('rounds', 1)} of at most {args.max_rounds} round(s), "
                  f"{res.config.get(mod.ROUNDS['units'])} {mod.ROUNDS['units']} in all")
        else:
            res = experiments.run(mod.NAME, config, **kw)
    finally:
        be.close()
    _print_claims(res.claims)
    files = sorted(p.name for p in res.out_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    print(f"outputs: {res.out_dir}/ ({len([f for f in files if f.endswith('.png')])} figure(s), "
          f"{len([f for f in files if f.endswith('.parquet')])} table(s), config.json, claims.json, run.json)")
    if res.reused:
        print(f"reused the stored run {res.run_id} (add --force to recompute)")
    else:
        print(f"run {res.run_id}: {res.shards_computed} shard(s) computed, {res.shards_reused} reused, "
              f"{_wall(res.wall_s)}")
    return 0


# -------------------------------------------------------------------------- reproduce


def _release_compiled() -> None:
    """Drop every compiled XLA program before the next experiment once this process holds more
    than half the kernel's memory-map limit. One process that kept all experiments' programs
    (each compaction size and layout is one more) reached vm.max_map_count (65530: "LLVM ERROR:
    Unable to allocate section memory") in a run of 26 experiments; below half the limit the
    programs stay, so experiments keep sharing compiled epochs. Results never depend on it."""
    from .envvars import memory_maps
    used, limit = memory_maps()
    if used is not None and limit is not None and used > limit // 2:
        import jax
        jax.clear_caches()


def cmd_reproduce(args) -> int:
    _check_backend(args)
    store = _open_store(args.out)
    platform = _select_device(args.device)
    from tqdm.auto import tqdm

    from . import experiments
    from .backends.jobs import default_jobs, longest_first, run_parallel
    names = experiments.names(None if args.paper == "all" else args.paper)
    if not names:
        raise ConfigError(f"paper: no experiment is registered for {args.paper!r}")
    out = Path(args.out)
    jobs = 1 if args.backend != "local" or args.processes else (args.jobs or default_jobs(platform))
    t0, started = time.perf_counter(), time.time()
    status: dict[str, dict] = {}
    # built-in experiments run `jobs` at a time in worker processes; any other (a plugin's, one
    # registered in this process only) runs here afterwards, where it was registered
    par = [n for n in names if experiments.get(n).__name__.startswith("rnnlab.experiments.")] if jobs > 1 else []
    par = par if len(par) > 1 else []
    bar = tqdm(total=len(names), desc="reproduce", unit="exp", file=sys.stderr, dynamic_ncols=True,
               disable=not _progress_enabled())
    for name, st in run_parallel(par, args.scale, out, jobs, platform, order=longest_first(par, args.scale)) if par else ():
        status[name] = st
        if st["status"] == "failed":
            tqdm.write(f"rnnlab: error: {name}: {st['error']}" if "Traceback" not in st["detail"]
                       else f"rnnlab: experiment {name} raised:\n{st['detail']}", file=sys.stderr)
        bar.set_description(name)
        bar.update(1)
    be = _backend(args)
    try:
        for name in [n for n in names if n not in par]:
            bar.set_description(name)
            t1 = time.perf_counter()
            try:
                res = experiments.run(name, scale=args.scale, out=out, store=store, backend=be,
                                      progress=False)
            except Exception as e:   # one broken experiment must not stop the others: report it
                msg = " ".join(str(e).split()) or type(e).__name__
                status[name] = {"status": "failed", "wall_s": time.perf_counter() - t1,
                                "error": f"{type(e).__name__}: {msg}"}
                if isinstance(e, RnnlabError):
                    tqdm.write(f"rnnlab: error: {name}: {msg}", file=sys.stderr)
                else:
                    tqdm.write(f"rnnlab: experiment {name} raised:\n{traceback.format_exc()}", file=sys.stderr)
                continue
            finally:
                _release_compiled()
                bar.update(1)
            verdicts = {c.id: c.verdict for c in res.claims}
            status[name] = {"status": "done", "wall_s": res.wall_s, "reused": res.reused,
                            "run_id": res.run_id, "verdicts": verdicts}
    finally:
        bar.close()
        if hasattr(be, "close"):
            be.close()
    return _finish_reproduce(args, names, out, status, t0, started, platform, jobs if par else 1)


def _finish_reproduce(args, names, out, status, t0, started, platform, jobs) -> int:
    """reproduce.json, the report and the summary table of a reproduction."""
    from .report import build_report
    wall = time.perf_counter() - t0
    repro = {"paper": args.paper, "scale": args.scale, "started": started, "finished": time.time(),
             "wall_s": wall, "backend": args.backend, "device": platform, "jobs": jobs,
             "experiments": {n: {k: v for k, v in status[n].items() if k != "detail"} for n in names if n in status}}
    try:
        (out / "reproduce.json").write_text(json.dumps(repro, indent=2, default=str))
    except OSError as e:
        raise StoreError(f"out: cannot write {out / 'reproduce.json'}: {e.strerror or e}") from None
    html_path, md_path = build_report(out)

    rows = []
    for name in names:
        s = status[name]
        vs = list((s.get("verdicts") or {}).values())
        rows.append((name, s["status"] + (" (reused)" if s.get("reused") else ""), vs.count("holds"),
                     vs.count("fails"), vs.count("inconclusive"), _wall(s.get("wall_s"))))
    _print_table(rows, ["experiment", "status", "holds", "fails", "inconclusive", "wall"])
    allv = [v for s in status.values() for v in (s.get("verdicts") or {}).values()]
    failed = [n for n, s in status.items() if s["status"] == "failed"]
    print(f"{len(names)} experiments ({args.paper}, scale {args.scale}), {len(allv)} claims: "
          f"{allv.count('holds')} hold, {allv.count('fails')} fail, {allv.count('inconclusive')} inconclusive"
          + (f" ({100 * (len(allv) - allv.count('inconclusive')) / len(allv):.1f}% decided)" if allv else "")
          + (f"; {len(failed)} experiment(s) FAILED to run: {', '.join(failed)}" if failed else ""))
    print(f"total wall time {_wall(wall)}")
    print(f"report: {html_path}  {md_path}")
    return 1 if failed else 0


# ----------------------------------------------------------------------------- report


def cmd_report(args) -> int:
    from .report import build_report, collect, verdict_counts
    if Path(args.dir).is_dir() and all(e.status == "not run" for e in collect(args.dir)):
        raise ConfigError(f"dir: nothing to report in {args.dir}: it holds no experiment results "
                          f"(run `rnnlab run EXPERIMENT --out {args.dir}` or `rnnlab reproduce` first)")
    html_path, md_path = build_report(args.dir)
    entries = collect(args.dir)
    counts = verdict_counts(entries)
    done = sum(e.status == "done" for e in entries)
    print(f"{done}/{len(entries)} experiments with results; "
          + ", ".join(f"{counts[v]} {v}" for v in counts))
    print(f"report: {html_path}  {md_path}")
    return 0


# ------------------------------------------------------------------------------ query


def cmd_query(args) -> int:
    if not args.tables and not args.sql:
        raise ConfigError("sql: give a SQL query, or --tables to list the tables")
    store = _open_store(args.out, create=False)
    if args.tables:
        import pandas as pd
        from .store import view_name
        rows = [(t, view_name(t), len(store.keys(t))) for t in store.tables()]
        rows.append(("(run records)", "runs", len(store.runs())))
        _print_frame(pd.DataFrame(rows, columns=["table", "sql name", "results"]), index=False)
        if args.sql is None:
            return 0
    try:
        df = store.query(args.sql)
    except StoreError as e:
        raise StoreError(f"sql: {e}") from None
    if df.empty:
        print(f"(no rows; columns: {', '.join(map(str, df.columns))})")
    else:
        _print_frame(df, max_rows=args.max_rows)
    return 0


# ------------------------------------------------------------------------- list, bench


def cmd_list(args) -> int:
    from . import experiments
    from .report.templates import PAPERS
    reg = experiments.registry()
    rows = [(n, PAPERS.get(m.PAPER, (m.PAPER,))[0], getattr(m, "SOURCE", "")) for n, m in reg.items()]
    if not rows:
        print("no experiments registered")
        return 0
    _print_table(rows, ["experiment", "paper", "source"])
    return 0


def cmd_bench(args) -> int:
    try:
        bench = importlib.import_module("rnnlab.bench")
    except ModuleNotFoundError as e:
        if e.name in ("rnnlab.bench", None) or "rnnlab.bench" in str(e):
            print("rnnlab: error: bench: the benchmarks (rnnlab.bench) are not available in this installation",
                  file=sys.stderr)
            return 2
        raise
    _select_device(args.device)
    rc = bench.main(args.quick)
    return rc if isinstance(rc, int) else 0


# ---------------------------------------------------------------- check-cell, compare-cell


def cmd_check_cell(args) -> int:
    from . import cells, plugins
    from .cells import conformance
    plugin, name = plugins.parse_target(args.target)
    if plugin is not None:
        plugins.load(plugin)
    cell = cells.get(name)
    print(f"check-cell {cell.name}" + (f" ({cell.reference})" if cell.reference else "")
          + (f", from {plugins.owner('cell', cell.name)}" if plugins.owner("cell", cell.name) else ""))
    results = conformance.check(cell)
    print(conformance.report(results))
    return 0 if all(r.ok for r in results) else 1


def cmd_compare_cell(args) -> int:
    from . import compare
    _check_backend(args)
    store = _open_store(args.out)
    platform = _select_device(args.device)
    against = [c.strip() for c in args.against.split(",") if c.strip()]
    names = None if args.experiments is None else [n.strip() for n in args.experiments.split(",") if n.strip()]
    overrides = {}
    for item in args.set:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"set: expected KEY=VALUE, got {item!r}")
        overrides[k.strip()] = _parse_value(v)
    print(f"compare-cell {args.cell} against {', '.join(against)} at scale {args.scale} on {platform}")
    be = _backend(args)
    try:
        res = compare.compare_cell(args.cell, against=against, experiments=names, scale=args.scale,
                                   out=args.out, store=store, backend=be, overrides=overrides,
                                   progress=_progress_enabled())
    finally:
        be.close()
    for name, why in res.skipped.items():
        print(f"skipped {name}: {why}")
    if res.ranking.empty:
        print("(no claim compares the cells)")
    else:
        _print_frame(res.summary, index=False)
    from .report import build_report
    build_report(res.out_dir)                 # the experiments of the comparison, in detail
    html_path, md_path = build_report(args.out)
    print(f"ranking: {res.path}; report: {html_path}  {md_path}")
    return 0


# ------------------------------------------------------------------------------- main


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=None):
    """rnnlab's own warnings as one line, ``rnnlab: warning: ...``; others as Python shows them."""
    if issubclass(category, RnnlabWarning):
        print(f"rnnlab: warning: {' '.join(str(message).split())}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def _setup_process() -> None:
    """What the rnnlab command, as an application, sets for its own process: the persistent
    compilation cache (a cold quick reproduction spends about a minute compiling) and a
    non-interactive matplotlib backend. Importing rnnlab as a library sets neither."""
    from ._jaxcfg import use_compilation_cache
    use_compilation_cache()
    os.environ.setdefault("MPLBACKEND", "Agg")


def load_plugins(specs) -> None:
    """The automatic plugins (RNNLAB_PLUGINS, entry points), then `specs` (--plugin)."""
    from . import plugins
    plugins.autoload()
    for spec in specs:
        plugins.load(spec)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():          # for this command only: restored when it ends
        default = warnings.showwarning
        warnings.showwarning = lambda *a, **k: _show_warning(*a, **k, _default=default)
        return _run_command(args)


def _run_command(args) -> int:
    from ._jaxcfg import float64
    try:
        _setup_process()
        load_plugins(list(getattr(args, "plugins_top", []) or []) + list(getattr(args, "plugins", []) or []))
        with float64():
            return int(args.func(args) or 0)
    except RnnlabError as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"rnnlab: error: {msg}", file=sys.stderr)
        return 2 if isinstance(e, PluginError) else 1
    except KeyboardInterrupt:
        print("rnnlab: interrupted (finished shards are stored; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
