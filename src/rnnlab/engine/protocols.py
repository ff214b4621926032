"""Training protocols (PROTOCOLS section 3). Either one can be used with any task."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from ..errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    name: str = "mehta"
    optimizer: str = "adam"          # adam | sgd
    lr: float = 1e-3
    batch_size: int = 32
    loss: str = "xent"               # xent | sse
    max_epochs: int = 150
    halve_on: str = "val_acc_drop"   # val_acc_drop | train_loss_rise | none
    patience: int | None = 4         # stop after this many epochs without a new best val acc
    min_lr: float = 1e-6             # stop when lr falls below
    tol: float | None = None         # stop when |change of mean train loss| < tol
    shuffle: bool = True             # reshuffle each model's batch order every epoch
    max_loss: float = 1e6            # a batch loss above this (or non-finite) marks "diverged"
    stop_acc: float | None = None    # stop once val acc reaches this (nothing left to gain at 1.0)

    def __post_init__(self):
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer: unknown optimizer {self.optimizer!r}; known: adam, sgd")
        if self.loss not in ("xent", "sse"):
            raise ConfigError(f"loss: unknown loss {self.loss!r}; known: xent, sse")
        if self.halve_on not in ("val_acc_drop", "train_loss_rise", "none"):
            raise ConfigError(f"halve_on: unknown rule {self.halve_on!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr: must be a finite number > 0, got {self.lr!r}")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise ConfigError(f"batch_size: must be a positive integer, got {self.batch_size!r}")
        if self.stop_acc is not None and not (0 < self.stop_acc <= 1):
            raise ConfigError(f"stop_acc: must be in (0, 1], got {self.stop_acc!r}")
        if int(self.max_epochs) != self.max_epochs or self.max_epochs < 1:
            raise ConfigError(f"max_epochs: must be a positive integer, got {self.max_epochs!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def with_(self, **kw) -> "Protocol":
        return replace(self, **kw)


#: Mehta: Adam 1e-3, batch 32 (our choice), lr halved when val acc gets worse, stop at 150
#: epochs / 4 epochs without improvement / lr < 1e-6.
MEHTA = Protocol()

#: Sterin et al. (authors' code): squared error summed over the sequence, SGD one sequence at a
#: time, lr 1e-3 halved when the epoch's mean error rises, stop when it changes by < 1e-5.
STERIN = Protocol(name="sterin", optimizer="sgd", lr=1e-3, batch_size=1, loss="sse",
                  max_epochs=1000, halve_on="train_loss_rise", patience=None, min_lr=0.0,
                  tol=1e-5)

PROTOCOLS = {"mehta": MEHTA, "sterin": STERIN}


def get(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"protocol: unknown protocol {name!r}; known: {', '.join(PROTOCOLS)}") from None
