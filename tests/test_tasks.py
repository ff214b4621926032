"""rnnlab.tasks: every registered task is checked for shapes, determinism and its rule, with the
rules and automata re-implemented here from PROTOCOLS §2 rather than imported."""
import numpy as np
import pytest

from rnnlab.errors import ConfigError
from rnnlab.tasks import ALPHABET, NEG, POS, SPLIT_IDS, STOP, TASKS, TaskData, get, make, splits

N = 120
ALL = sorted(TASKS)
STOCHASTIC = [name for name in ALL if TASKS[name].fixed_rows is None]
M_TASKS = ["count", "first", "xor"]

# Reber automaton of PROTOCOLS §2, written out independently: state -> {symbol: next state}.
REBER = {
    "start": {"B": "q0"},
    "q0": {"T": "q1", "P": "q4"},
    "q1": {"S": "q1", "X": "q2"},
    "q2": {"S": "end", "X": "q4"},
    "q4": {"T": "q4", "V": "q5"},
    "q5": {"P": "q2", "V": "end"},
    "end": {"E": "done"},
    "done": {},
}


def reber_walk(string):
    """Reber states after each prefix; AssertionError on an illegal symbol or early end."""
    state, out = "start", []
    for c in string:
        assert c in REBER[state], f"{string}: {c} illegal in {state}"
        state = REBER[state][c]
        out.append(state)
    assert state == "done", f"{string}: ends in {state}"
    return out


def embedded_walk(string):
    """Embedded-Reber states after each prefix, checked against the structure B x <reber> x E."""
    assert string[0] == "B" and string[1] in "TP" and string[-2] == string[1]
    assert string[-1] == "E"
    b = string[1]
    return ["q0", f"{b}/start"] + [f"{b}/{s}" for s in reber_walk(string[2:-2])] + ["end", "done"]


def successors(state):
    """Legal next symbols of a state name from reber_walk or embedded_walk."""
    if "/" in state:                      # inside a branch of the embedded grammar
        b, inner = state.split("/")
        return b if inner == "done" else "".join(REBER[inner])
    return "".join(REBER[state])          # plain Reber, or the embedded q0 / end / done


def label_by_rule(name, row):
    """Label of one sentence by the paper's rule, or None when the rule says redraw."""
    sentiments = ["+" if w in (6, 7) else "-" for w in row if w >= 6]
    if name == "count":
        pos, neg = sentiments.count("+"), sentiments.count("-")
        return None if pos == neg else int(pos > neg)
    if name == "first":
        return None if not sentiments else int(sentiments[0] == "+")
    if name == "xor":
        return None if len(sentiments) < 2 else int(sentiments[0] != sentiments[1])
    raise AssertionError(name)


def assert_same(a: TaskData, b: TaskData):
    for key in ("tokens", "lengths", "targets", "target_mask", "accept"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert (a.labels is None) == (b.labels is None)
    if a.labels is not None:
        np.testing.assert_array_equal(a.labels, b.labels)
    assert a.meta.get("strings") == b.meta.get("strings")


def differs(a: TaskData, b: TaskData) -> bool:
    return a.tokens.shape != b.tokens.shape or not np.array_equal(a.tokens, b.tokens)


# --- generic, over the registry ---------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_shapes_and_dtypes(name):
    spec = get(name)
    d = make(name, N, seed=0)
    rows = spec.fixed_rows or N
    assert isinstance(d, TaskData) and d.name == name and len(d) == rows
    assert d.tokens.dtype == np.int32 and d.tokens.ndim == 2 and d.tokens.shape[0] == rows
    T = d.tokens.shape[1]
    assert d.lengths.dtype == np.int32 and d.lengths.shape == (rows,)
    assert d.targets.dtype == np.int32 and d.targets.shape == (rows, T)
    assert d.target_mask.dtype == np.float32 and d.target_mask.shape == (rows, T)
    assert d.accept.dtype == bool and d.accept.shape == (rows, T, spec.n_outputs)
    assert (d.vocab, d.n_outputs) == (spec.vocab, spec.n_outputs)
    assert d.lengths.min() >= 1 and d.lengths.max() == T
    assert 0 <= d.tokens.min() and d.tokens.max() < d.vocab
    assert 0 <= d.targets.min() and d.targets.max() < d.n_outputs
    pad = np.arange(T)[None, :] >= d.lengths[:, None]
    assert not d.tokens[pad].any() and not d.targets[pad].any()
    assert not d.target_mask[pad].any() and not d.accept[pad].any()
    if spec.kind == "classify":
        assert d.labels.dtype == np.int32 and d.labels.shape == (rows,)
    assert spec.kind in ("classify", "next-symbol", "probe")


@pytest.mark.parametrize("name", ALL)
def test_targets_are_accepted_where_scored(name):
    d = make(name, N, seed=1)
    scored = d.target_mask == 1
    assert np.all(d.accept[scored, d.targets[scored]])
    assert set(np.unique(d.target_mask)) <= {0.0, 1.0}
    assert not d.accept[~scored].any()


@pytest.mark.parametrize("name", ALL)
def test_equal_seeds_equal_data(name):
    assert_same(make(name, N, seed=7), make(name, N, seed=np.int64(7)))


@pytest.mark.parametrize("name", STOCHASTIC)
def test_different_seeds_differ(name):
    assert differs(make(name, N, seed=1), make(name, N, seed=2))


@pytest.mark.parametrize("name", ALL)
def test_splits_are_separate_seed_streams(name):
    spec = get(name)
    assert SPLIT_IDS == {"train": 1, "val": 2, "test": 3}   # pinned: changing them changes data
    sizes = {"train": 60, "val": 60, "test": 60}   # equal sizes: only the stream tells them apart
    parts = splits(name, seed=3, sizes=sizes)
    assert list(parts) == list(sizes)
    for split, data in parts.items():
        assert len(data) == (spec.fixed_rows or sizes[split])
        assert data.meta["split"] == split and data.meta["seed"] == 3
        # the stream is [seed, task_id, split_id]: stable integers, no other split's size enters
        length = spec.default_length
        split_id = {"train": 1, "val": 2, "test": 3}[split]
        stream = np.random.default_rng([3, spec.task_id, split_id])
        assert_same(data, spec.build(len(data), stream, length))
    assert_same(parts["train"], splits(name, 3, {"train": 60, "test": 5})["train"])
    if spec.fixed_rows is None:
        assert differs(parts["train"], parts["val"]) and differs(parts["val"], parts["test"])
        assert differs(parts["train"], parts["test"])
        assert differs(parts["train"], make(name, 60, seed=3))


def test_registry_and_stream_ids_are_pinned():
    """Task ids enter every seed stream: they must be unique and never change."""
    assert {k: v.task_id for k, v in TASKS.items()} == {
        "count": 1, "first": 2, "xor": 3, "reber": 4, "embedded-reber": 5, "discrepancy": 6}
    for name, spec in TASKS.items():
        assert spec.name == name and spec.module.startswith("rnnlab.tasks.") and spec.reference


@pytest.mark.parametrize("name", ALL)
def test_default_split_sizes(name):
    spec = get(name)
    expected = {"count": {"train": 8000, "val": 2000, "test": 3000},
                "reber": {"train": 250, "val": 250, "test": 250},
                "embedded-reber": {"train": 2000, "val": 500, "test": 500}}
    expected["first"] = expected["xor"] = expected["count"]
    if name in expected:
        assert spec.default_sizes == expected[name]
    parts = splits(name, seed=0)
    assert {k: len(v) for k, v in parts.items()} == {
        k: spec.fixed_rows or v for k, v in spec.default_sizes.items()}


@pytest.mark.parametrize("name", ALL)
def test_subset_slices_rows_and_row_meta(name):
    d = make(name, N, seed=4)
    idx = np.array([1, 0]) if len(d) == 2 else np.array([5, 2, 9])
    s = d.subset(idx)
    assert len(s) == len(idx)
    np.testing.assert_array_equal(s.tokens, d.tokens[idx])
    np.testing.assert_array_equal(s.accept, d.accept[idx])
    for key, value in d.meta.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(s.meta[key], value[idx])
        elif key == "strings":
            assert s.meta[key] == [value[i] for i in idx]
        else:
            assert s.meta[key] == value
    assert len(d.subset(0)) == 1 and len(d.subset(d.lengths == d.lengths[0])) >= 1


# --- argument checks --------------------------------------------------------------------------

def test_unknown_task():
    with pytest.raises(ConfigError, match=r"^task: unknown task 'nope'; known: .*count"):
        get("nope")
    with pytest.raises(ConfigError, match=r"^task: unknown task"):
        make("nope", 10, 0)


@pytest.mark.parametrize("n", [0, -3, 2.5, "10", True, None])
def test_bad_n(n):
    with pytest.raises(ConfigError, match=r"^n: must be a positive integer, got "):
        make("count", n, 0)


@pytest.mark.parametrize("name,length", [("count", 0), ("first", -1), ("xor", 1),
                                         ("discrepancy", 0), ("reber", 0), ("xor", 2.0)])
def test_bad_length(name, length):
    with pytest.raises(ConfigError, match=r"^length: "):
        make(name, 10, 0, length=length)


def test_bad_seed_and_sizes():
    with pytest.raises(ConfigError, match=r"^seed: "):
        make("count", 10, -1)
    with pytest.raises(ConfigError, match=r"^sizes: "):
        splits("count", 0, {"training": 10})
    with pytest.raises(ConfigError, match=r"^sizes\['val'\]: must be a positive integer"):
        splits("count", 0, {"train": 10, "val": 0})


def test_numpy_integers_accepted():
    d = make("first", np.int64(5), np.int32(2), length=np.int16(1))
    assert d.tokens.shape == (5, 1)
    assert len(splits("xor", np.uint8(1), {"test": np.int64(4)}, length=np.int64(2))["test"]) == 4


# --- Mehta's sentiment tasks ------------------------------------------------------------------

def test_vocabulary_constants():
    assert tuple(STOP) == (0, 1, 2, 3, 4, 5) and tuple(POS) == (6, 7) and tuple(NEG) == (8, 9)


@pytest.mark.parametrize("name", M_TASKS)
@pytest.mark.parametrize("length", [None, 2, 10, 23])
def test_labels_obey_rule(name, length):
    d = make(name, 300, seed=5, length=length)
    L = length or 10
    assert d.tokens.shape == (300, L) and np.all(d.lengths == L)
    for row, label in zip(d.tokens, d.labels):
        assert label_by_rule(name, list(row)) == label
    assert set(np.unique(d.labels)) == {0, 1}
    if L >= 10:   # (xor at length 2 has no room for stop words)
        assert set(np.unique(d.tokens)) == set(range(10))
    last = np.zeros(L, bool)
    last[-1] = True
    np.testing.assert_array_equal(d.target_mask, np.tile(last, (300, 1)).astype(np.float32))
    np.testing.assert_array_equal(d.targets[:, -1], d.labels)
    assert not d.targets[:, :-1].any()
    np.testing.assert_array_equal(d.accept[:, -1], np.eye(2, dtype=bool)[d.labels])


@pytest.mark.parametrize("name", M_TASKS)
def test_smallest_lengths(name):
    length = get(name).min_length
    d = make(name, 50, seed=0, length=length)
    for row, label in zip(d.tokens, d.labels):
        assert label_by_rule(name, list(row)) == label


# --- Sterin et al.: Reber, embedded Reber, discrepancy inputs ---------------------------------

def check_next_symbol(d, walk):
    names = d.meta["state_names"]
    assert len(d.meta["strings"]) == len(d)
    for i, s in enumerate(d.meta["strings"]):
        m = len(s) - 1
        assert d.lengths[i] == m
        assert "".join(ALPHABET[k] for k in d.tokens[i, :m]) == s[:-1]
        assert "".join(ALPHABET[k] for k in d.targets[i, :m]) == s[1:]
        assert np.all(d.target_mask[i, :m] == 1)
        states = walk(s)[:-1]
        assert [names[k] for k in d.meta["states"][i, :m]] == states
        assert np.all(d.meta["states"][i, m:] == -1)
        for t, state in enumerate(states):
            legal = "".join(ALPHABET[k] for k in np.flatnonzero(d.accept[i, t]))
            assert sorted(legal) == sorted(successors(state)), (s, t, state)


def test_reber_strings_accepted_and_accept_sets_exact():
    assert ALPHABET == "BTSXVPE"
    d = make("reber", 300, seed=11)
    check_next_symbol(d, reber_walk)
    strings = d.meta["strings"]
    assert {s[1] for s in strings} == {"T", "P"} and len(set(strings)) > 30
    # after B both branches are legal
    assert np.all(d.accept[:, 0, [ALPHABET.index("T"), ALPHABET.index("P")]])
    assert d.accept[:, 0].sum(axis=1).tolist() == [2] * len(d)


def test_reber_length_argument_is_ignored():
    assert_same(make("reber", 20, seed=3, length=4), make("reber", 20, seed=3))


def test_embedded_reber_long_term_target_is_second_symbol():
    d = make("embedded-reber", 300, seed=12)
    check_next_symbol(d, embedded_walk)
    rows = np.arange(len(d))
    pos = d.meta["long_term_pos"]
    assert d.meta["long_term_pos"].dtype == np.int32 and d.meta["branch"].dtype == np.int32
    np.testing.assert_array_equal(d.tokens[rows, pos], ALPHABET.index("E"))
    np.testing.assert_array_equal(d.targets[rows, pos], d.tokens[:, 1])
    np.testing.assert_array_equal(d.meta["branch"], (d.tokens[:, 1] == ALPHABET.index("P")))
    # the only legal successor of the inner E is the second symbol
    np.testing.assert_array_equal(d.accept[rows, pos], np.eye(7, dtype=bool)[d.tokens[:, 1]])
    assert set(d.meta["branch"].tolist()) == {0, 1}


def test_discrepancy_words():
    d = make("discrepancy", 5, seed=9, length=6)
    np.testing.assert_array_equal(d.tokens, [[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    assert (d.vocab, d.n_outputs, d.labels) == (2, 2, None)
    np.testing.assert_array_equal(d.lengths, [6, 6])
    assert not d.targets.any() and not d.target_mask.any() and not d.accept.any()
    assert_same(d, make("discrepancy", 1, seed=0, length=6))
    assert make("discrepancy", 1, 0, length=1).tokens.tolist() == [[0], [1]]


@pytest.mark.parametrize("name,walk", [("reber", reber_walk), ("embedded-reber", embedded_walk)])
def test_edges_are_chosen_uniformly(name, walk):
    counts = {}
    for s in make(name, 1500, seed=13).meta["strings"]:
        for state, symbol in zip(walk(s)[:-1], s[1:]):
            if len(successors(state)) == 2:
                counts.setdefault(state, []).append(symbol == successors(state)[0])
    assert len(counts) >= 5
    for state, first in counts.items():
        if len(first) >= 400:
            assert abs(np.mean(first) - 0.5) < 0.08, (state, np.mean(first), len(first))
