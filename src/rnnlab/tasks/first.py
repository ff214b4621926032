"""First (M, §III.A): positive iff the first non-stop word is positive.

Sentences with no non-stop word are redrawn. Label 1 = positive, 0 = negative.
"""
import numpy as np

from .sentiment import is_nonstop, is_positive, sentiment_spec


def rule(tokens: np.ndarray):
    nonstop = is_nonstop(tokens)
    first = tokens[np.arange(len(tokens)), nonstop.argmax(axis=1)]
    return is_positive(first).astype(np.int32), nonstop.any(axis=1)


SPEC = sentiment_spec("first", 2, __name__, rule)
