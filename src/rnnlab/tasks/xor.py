"""Xor (M, §III.A): positive iff the first two non-stop words differ in sentiment.

Sentences with fewer than two non-stop words are redrawn, so ``length`` must be at least 2.
Label 1 = the two differ (positive then negative or the reverse), 0 = same sentiment.
"""
import numpy as np

from .sentiment import is_nonstop, is_positive, sentiment_spec


def rule(tokens: np.ndarray):
    nonstop = is_nonstop(tokens)
    rows = np.arange(len(tokens))
    i1 = nonstop.argmax(axis=1)
    rest = nonstop.copy()
    rest[rows, i1] = False
    i2 = rest.argmax(axis=1)
    differ = is_positive(tokens[rows, i1]) != is_positive(tokens[rows, i2])
    return differ.astype(np.int32), nonstop.sum(axis=1) >= 2


SPEC = sentiment_spec("xor", 3, __name__, rule, min_length=2)
