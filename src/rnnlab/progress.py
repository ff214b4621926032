"""Progress display for long work: tqdm on a terminal, silent when RNNLAB_PROGRESS=0."""
import os
import sys

from tqdm.auto import tqdm


def progress_bar(iterable=None, *, desc: str = "", disable: bool = False, **kw):
    if os.environ.get("RNNLAB_PROGRESS", "1") == "0":
        disable = True
    return tqdm(iterable, desc=desc, disable=disable, file=sys.stderr, dynamic_ncols=True,
                leave=False, **kw)
