"""Cell registry. ``get(name)`` returns a :class:`Cell`; ``register`` adds your own (from a
plugin, so that worker processes and the CLI see it too: :mod:`rnnlab.plugins`)."""
from ..errors import ConfigError
from .base import Cell, Param
from .gru import GRU, GRU_S
from .lstm import LSTM
from .mingru import MINGRU
from .rnn import RNN_SIGMOID, RNN_TANH
from .ugrnn import UGRNN

CELLS: dict[str, Cell] = {}

#: characters a cell name may not hold: ``--cells a,b`` lists, ``check-cell PLUGIN:CELL``
_BAD_NAME_CHARS = set(",:= \t\n/\\")
ROLES = ("w_in", "w_rec", "bias")
AXES = ("gh", "h", "in")


def check_cell(cell) -> Cell:
    """The static part of the cell contract (see docs/extending.md): ConfigError naming the
    cell and the broken field. The numerical part is :mod:`rnnlab.cells.conformance`."""
    if not isinstance(cell, Cell):
        raise ConfigError(f"cell: register() takes a rnnlab.cells.Cell, got {type(cell).__name__}")
    name = cell.name
    if not isinstance(name, str) or not name or set(name) & _BAD_NAME_CHARS:
        raise ConfigError(f"cell: invalid cell name {name!r} (non-empty, no spaces, commas, colons, "
                          "'=' or slashes)")
    if not isinstance(cell.gates, int) or isinstance(cell.gates, bool) or cell.gates < 1:
        raise ConfigError(f"cell {name}: gates must be a positive integer, got {cell.gates!r}")
    if not isinstance(cell.state_mult, int) or isinstance(cell.state_mult, bool) or cell.state_mult < 1:
        raise ConfigError(f"cell {name}: state_mult must be a positive integer, got {cell.state_mult!r}")
    if not isinstance(cell.params, dict) or not cell.params:
        raise ConfigError(f"cell {name}: params must be a non-empty dict of name -> Param")
    for pname, prm in cell.params.items():
        if not isinstance(prm, Param):
            raise ConfigError(f"cell {name}: params[{pname!r}] must be a Param, got {type(prm).__name__}")
        if prm.role not in ROLES:
            raise ConfigError(f"cell {name}: params[{pname!r}].role must be one of {', '.join(ROLES)}, "
                              f"got {prm.role!r}")
        if not prm.axes or any(a not in AXES for a in prm.axes):
            raise ConfigError(f"cell {name}: params[{pname!r}].axes must be a non-empty tuple of "
                              f"{', '.join(AXES)}, got {prm.axes!r}")
        if prm.role == "w_in" and prm.axes[-1] != "in" or prm.role == "w_rec" and prm.axes[-1] != "h":
            raise ConfigError(f"cell {name}: params[{pname!r}]: a {prm.role} tensor's last axis must be "
                              f"{'in' if prm.role == 'w_in' else 'h'} (its fan-in), got {prm.axes!r}")
    for b in cell.bias_params:
        if b not in cell.params:
            raise ConfigError(f"cell {name}: bias_params names {b!r}, which is not in params")
    if not callable(cell.step):
        raise ConfigError(f"cell {name}: step must be callable step(params, state, x) -> state")
    if (cell.input_proj is None) != (cell.step_proj is None):
        raise ConfigError(f"cell {name}: give both input_proj and step_proj, or neither")
    return cell


def register(cell: Cell) -> Cell:
    """Add `cell` to the registry (replacing a user cell of the same name; the built-in cells
    cannot be replaced). Returns it, so it can decorate a module-level assignment."""
    check_cell(cell)
    if cell.name in BUILTIN and CELLS.get(cell.name) is not cell:
        raise ConfigError(f"cell: {cell.name!r} is a built-in cell; give yours another name")
    CELLS[cell.name] = cell
    return cell


BUILTIN: frozenset = frozenset()
for _c in (RNN_TANH, GRU, RNN_SIGMOID, GRU_S, LSTM, UGRNN, MINGRU):
    register(_c)
BUILTIN = frozenset(CELLS)


def known() -> dict[str, Cell]:
    """Every registered cell, after loading the automatic plugins (RNNLAB_PLUGINS, entry points)."""
    from .. import plugins
    plugins.autoload()
    return CELLS


def get(name: str) -> Cell:
    cells = CELLS if name in CELLS else known()
    try:
        return cells[name]
    except (KeyError, TypeError):
        raise ConfigError(f"cell: unknown cell {name!r}; known: {', '.join(sorted(CELLS))}") from None


__all__ = ["Cell", "Param", "CELLS", "BUILTIN", "check_cell", "get", "known", "register"]
