"""Vocabulary and sampler shared by Mehta's Count, First and Xor tasks (M, §III.A "The Dataset").

Ten words: ids 0-5 are stop words, 6-7 positive words, 8-9 negative words. A sentence is
``length`` words (10 in the paper) drawn uniformly and independently. Each task is a labelling
rule; sentences a rule cannot label (a Count tie, no non-stop word for First, fewer than two
for Xor) are redrawn. Redrawing is rejection sampling in vectorised batches.

The classifier reads the final hidden state (M §III.A, PROTOCOLS §2), so the label is the target
at the last position only: ``target_mask`` is 1 there and 0 elsewhere.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np

from .base import TaskData, TaskSpec

VOCAB = 10
STOP = (0, 1, 2, 3, 4, 5)
POS = (6, 7)
NEG = (8, 9)
N_OUTPUTS = 2
DEFAULT_LENGTH = 10
DEFAULT_SIZES = {"train": 8000, "val": 2000, "test": 3000}   # M §III.A
REFERENCE = "Mehta, Empirical Evaluation of ... RNNs, §III.A (The Dataset)"

#: rule(tokens [B, L]) -> (labels int32 [B], valid bool [B]); labels of invalid rows are ignored.
Rule = Callable[[np.ndarray], "tuple[np.ndarray, np.ndarray]"]


def is_nonstop(tokens: np.ndarray) -> np.ndarray:
    return tokens >= POS[0]


def is_positive(tokens: np.ndarray) -> np.ndarray:
    return np.isin(tokens, POS)


def is_negative(tokens: np.ndarray) -> np.ndarray:
    return np.isin(tokens, NEG)


def sample_sentences(rng: np.random.Generator, n: int, length: int, rule: Rule):
    """``n`` sentences the rule can label, and their labels: (tokens int32 [n, length],
    labels int32 [n]). Draws batches sized from the acceptance rate seen so far."""
    kept_tokens, kept_labels, have, rate = [], [], 0, 0.5
    while have < n:
        batch = int(np.ceil(1.25 * (n - have) / rate)) + 16
        tokens = rng.integers(0, VOCAB, size=(batch, length), dtype=np.int32)
        labels, valid = rule(tokens)
        rate = max(float(valid.mean()), 0.01)
        kept_tokens.append(tokens[valid])
        kept_labels.append(labels[valid])
        have += int(valid.sum())
    tokens = np.concatenate(kept_tokens)[:n]
    labels = np.concatenate(kept_labels)[:n].astype(np.int32)
    return tokens, labels


def classification_data(name: str, tokens: np.ndarray, labels: np.ndarray) -> TaskData:
    """Sequence classification read at the last position."""
    n, length = tokens.shape
    last = length - 1
    targets = np.zeros((n, length), np.int32)
    targets[:, last] = labels
    target_mask = np.zeros((n, length), np.float32)
    target_mask[:, last] = 1.0
    accept = np.zeros((n, length, N_OUTPUTS), bool)
    accept[np.arange(n), last, labels] = True
    return TaskData(name=name, tokens=tokens.astype(np.int32),
                    lengths=np.full(n, length, np.int32), targets=targets,
                    target_mask=target_mask, accept=accept, vocab=VOCAB, n_outputs=N_OUTPUTS,
                    labels=labels.astype(np.int32))


def _build(name: str, rule: Rule, n: int, rng: np.random.Generator, length: int) -> TaskData:
    tokens, labels = sample_sentences(rng, n, length, rule)
    return classification_data(name, tokens, labels)


def sentiment_spec(name: str, task_id: int, module: str, rule: Rule,
                   min_length: int = 1) -> TaskSpec:
    """Registry entry for one labelling rule over this vocabulary."""
    return TaskSpec(name=name, task_id=task_id, module=module, reference=REFERENCE,
                    kind="classify", vocab=VOCAB, n_outputs=N_OUTPUTS,
                    default_length=DEFAULT_LENGTH, default_sizes=dict(DEFAULT_SIZES),
                    build=partial(_build, name, rule), min_length=min_length)
