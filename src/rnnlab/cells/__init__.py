"""Cell registry. ``get(name)`` returns a :class:`Cell`; ``register`` adds your own."""
from ..errors import ConfigError
from .base import Cell, Param
from .gru import GRU, GRU_S
from .lstm import LSTM
from .mingru import MINGRU
from .rnn import RNN_SIGMOID, RNN_TANH
from .ugrnn import UGRNN

CELLS: dict[str, Cell] = {}


def register(cell: Cell) -> Cell:
    CELLS[cell.name] = cell
    return cell


for _c in (RNN_TANH, GRU, RNN_SIGMOID, GRU_S, LSTM, UGRNN, MINGRU):
    register(_c)


def get(name: str) -> Cell:
    try:
        return CELLS[name]
    except KeyError:
        raise ConfigError(f"cell: unknown cell {name!r}; known: {', '.join(sorted(CELLS))}") from None


__all__ = ["Cell", "Param", "CELLS", "get", "register"]
