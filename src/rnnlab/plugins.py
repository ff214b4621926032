"""Plugins: your own modules that register cells, tasks and experiments.

A plugin is a Python file (``path/to/my_cells.py``) or an importable module (``mypkg.cells``)
that calls :func:`rnnlab.cells.register`, :func:`rnnlab.tasks.register` or
:func:`rnnlab.experiments.register` when imported. Three ways to load plugins, all combined:

* ``rnnlab ... --plugin PATH_OR_MODULE`` (repeatable), or :func:`load` from Python;
* ``RNNLAB_PLUGINS``: plugin specs separated by ``os.pathsep`` (``:``) or commas;
* installed packages declaring an entry point in the group ``rnnlab.plugins``
  (``[project.entry-points."rnnlab.plugins"] my = "mypkg.cells"``); an entry point naming a
  callable (``"mypkg.cells:register_all"``) is called after its module is imported.

The environment and the entry points are loaded once per process, on the first lookup of a
cell, task or experiment (:func:`autoload`), not on ``import rnnlab``. Every process that runs
shards loads the same plugins before it runs anything: the backends pass :func:`loaded` (files
as absolute paths) to their worker processes and Ray workers (:func:`ensure`).

A plugin that fails to import raises :class:`PluginError` with one line naming the file (and
the line of it where the error arose) and the error; the CLI prints it and exits with status 2.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import re
import sys
import traceback
from pathlib import Path

from .errors import PluginError

GROUP = "rnnlab.plugins"
ENV = "RNNLAB_PLUGINS"

#: spec (a file's absolute path, or a module name) -> module, in load order
_LOADED: dict[str, object] = {}
#: registry name -> spec of the plugin that registered it, per kind ("cell", "task", "experiment")
_OWNER: dict[tuple[str, str], str] = {}
_LOADING: list[str] = []
_AUTO: dict = {"done": False, "error": None}


def is_file_spec(spec: str) -> bool:
    """A spec names a file when it ends in .py or contains a path separator."""
    return spec.endswith(".py") or os.sep in spec or (os.altsep is not None and os.altsep in spec)


def normalize(spec) -> str:
    """A file spec as its absolute path; a module name as it is."""
    spec = str(spec).strip()
    if not spec:
        raise PluginError("plugin: empty plugin name")
    return str(Path(spec).expanduser().resolve()) if is_file_spec(spec) else spec


def module_name(path: str) -> str:
    """The module name a plugin file is imported under: the same in every process (shard
    functions defined in a plugin are found by it in the workers)."""
    stem = re.sub(r"\W", "_", Path(path).stem)
    return f"rnnlab_plugin_{stem}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def _where(exc: BaseException, path: str | None) -> str:
    """'line N: ' of the plugin file where `exc` arose (its deepest frame in that file)."""
    if path is None:
        return ""
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename).resolve() == Path(path):
        return f"line {exc.lineno}: " if exc.lineno else ""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            if Path(frame.filename).resolve() == Path(path):
                line = frame.lineno
        except (OSError, ValueError):
            continue
    return f"line {line}: " if line else ""


def _error(spec: str, exc: BaseException, path: str | None) -> PluginError:
    msg = " ".join(str(exc).split())
    if isinstance(exc, SyntaxError) and exc.msg:
        msg = exc.msg
    return PluginError(f"plugin: {spec}: {_where(exc, path)}{type(exc).__name__}"
                       + (f": {msg}" if msg else ""))


def _snapshot() -> dict[str, set]:
    from . import cells, tasks
    exps = sys.modules.get("rnnlab.experiments")        # not imported: no plugin experiment yet
    return {"cell": set(cells.CELLS), "task": set(tasks.TASKS),
            "experiment": set(exps.extra()) if exps is not None and hasattr(exps, "extra") else set()}


def load(spec) -> object:
    """Import one plugin (once per process) and return its module. PluginError (one line,
    naming the file and the error) when it cannot be imported."""
    given = str(spec).strip()
    key = normalize(given)
    if key in _LOADED:
        return _LOADED[key]
    path = key if is_file_spec(given) else None
    if path is not None and not Path(path).is_file():
        raise PluginError(f"plugin: {given}: no such file")
    before = _snapshot()
    name = module_name(path) if path else key
    _LOADING.append(key)
    try:
        if path is not None:
            mspec = importlib.util.spec_from_file_location(name, path)
            if mspec is None or mspec.loader is None:
                raise PluginError(f"plugin: {given}: not a Python file")
            module = importlib.util.module_from_spec(mspec)
            sys.modules[name] = module
            try:
                mspec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            module = importlib.import_module(name)
    except PluginError:
        raise
    except (Exception, SystemExit) as e:     # any error of the user's module: one line
        raise _error(given, e, path) from None
    finally:
        _LOADING.pop()
    _LOADED[key] = module
    after = _snapshot()
    for kind in after:
        for n in after[kind] - before[kind]:
            _OWNER[(kind, n)] = key
    return module


def load_all(specs) -> list:
    return [load(s) for s in specs]


def env_specs() -> list[str]:
    """The plugin specs of RNNLAB_PLUGINS (os.pathsep- or comma-separated)."""
    text = os.environ.get(ENV, "")
    return [s.strip() for s in re.split(f"[,{re.escape(os.pathsep)}]", text) if s.strip()]


def entry_points() -> list:
    from importlib.metadata import entry_points as eps
    try:
        return list(eps(group=GROUP))
    except TypeError:                     # Python < 3.10 API
        return list(eps().get(GROUP, []))


def _load_entry_point(ep) -> None:
    spec = f"entry point {ep.name} = {ep.value}"
    if ep.value in _LOADED:
        return
    module_part, _, attr = ep.value.partition(":")
    before = _snapshot()
    try:
        obj = ep.load()
        if attr.strip() and callable(obj):
            obj()
    except (Exception, SystemExit) as e:
        origin = getattr(sys.modules.get(module_part.strip()), "__file__", None)
        raise _error(spec, e, origin) from None
    _LOADED[ep.value] = sys.modules.get(module_part.strip())
    after = _snapshot()
    for kind in after:
        for n in after[kind] - before[kind]:
            _OWNER[(kind, n)] = ep.value


def autoload() -> None:
    """Load the plugins of RNNLAB_PLUGINS and of the ``rnnlab.plugins`` entry points, once per
    process (registries call this on their first lookup). A broken one raises PluginError, on
    this and every later call."""
    if _AUTO["error"] is not None:
        raise _AUTO["error"]
    if _AUTO["done"]:
        return
    _AUTO["done"] = True
    try:
        for ep in entry_points():
            _load_entry_point(ep)
        for s in env_specs():
            load(s)
    except PluginError as e:
        _AUTO["error"] = e
        raise


def loaded() -> list[str]:
    """The plugins loaded in this process by file or module name (what workers must load)."""
    return [k for k in _LOADED if ":" not in k or is_file_spec(k)]


def ensure(specs) -> None:
    """Load `specs` (a worker: the driver's plugins) and this process's automatic ones."""
    autoload()
    for s in specs or ():
        load(s)


def owner(kind: str, name: str) -> str | None:
    """The plugin that registered `name` ("cell", "task" or "experiment"), if any."""
    return _OWNER.get((kind, name))


def _source_hash(obj) -> str:
    import inspect
    mod = inspect.getmodule(obj)
    try:
        text = inspect.getsource(mod) if mod is not None else inspect.getsource(obj)
    except (OSError, TypeError):
        text = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(obj) -> dict:
    """{kind:name -> hash of the source of the module defining it} for every user-registered
    (not built-in) cell or task named by a string anywhere in `obj` (a config or a shard):
    part of store keys, so editing your cell recomputes its results. Empty for built-ins only."""
    from . import cells, tasks
    names: set[str] = set()

    def walk(x):
        if isinstance(x, str):
            names.add(x)
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, (list, tuple, set)):
            for v in x:
                walk(v)
    walk(obj)
    out = {}
    for n in sorted(names):
        if n in cells.CELLS and n not in cells.BUILTIN:
            out[f"cell:{n}"] = _source_hash(cells.CELLS[n].step)
        if n in tasks.TASKS and n not in tasks.BUILTIN:
            out[f"task:{n}"] = _source_hash(tasks.TASKS[n].build)
    return out


def local_only(obj) -> list[str]:
    """User cells/tasks named in `obj` that no plugin registered (registered in this process
    only, e.g. in a notebook): other processes cannot know them."""
    from . import cells, tasks
    fp = fingerprint(obj)
    out = []
    for key in fp:
        kind, name = key.split(":", 1)
        builtin = cells.BUILTIN if kind == "cell" else tasks.BUILTIN
        if name not in builtin and owner(kind, name) is None:
            out.append(f"{kind} {name!r}")
    return out


def parse_target(text: str) -> tuple[str | None, str]:
    """'PLUGIN:NAME' -> (PLUGIN, NAME); 'NAME' -> (None, NAME)."""
    plugin, sep, name = str(text).rpartition(":")
    if not sep:
        return None, text
    if not plugin or not name:
        raise PluginError(f"cell: expected PLUGIN:CELL or CELL, got {text!r}")
    return plugin, name
