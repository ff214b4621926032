"""Count (M, §III.A): positive iff the sentence has more positive than negative words.

Ties (including sentences with no sentiment word) are redrawn. Label 1 = positive, 0 = negative.
"""
import numpy as np

from .sentiment import is_negative, is_positive, sentiment_spec


def rule(tokens: np.ndarray):
    pos = is_positive(tokens).sum(axis=1)
    neg = is_negative(tokens).sum(axis=1)
    return (pos > neg).astype(np.int32), pos != neg


SPEC = sentiment_spec("count", 1, __name__, rule)
