import numpy as np
import pytest

from medsearch.errors import MedsearchError
from medsearch.evaluation.retrieval import average_precision_at_k, count_relevant, retrieval_metrics

# Two multiclass queries, five ranked neighbours each (nearest first).
#   query A, class 0: neighbours 0 1 0 1 1 -> relevant 1 0 1 0 0; the gallery holds R = 4 of class 0
#   query B, class 2: neighbours 1 2 1 2 0 -> relevant 0 1 0 1 0; the gallery holds R = 2 of class 2
Y_QUERY = np.array([0, 2])
Y_NEIGHBOURS = np.array([[0, 1, 0, 1, 1], [1, 2, 1, 2, 0]])
N_RELEVANT = np.array([4, 2])


def test_precision_at_k_by_hand():
    m = retrieval_metrics(Y_QUERY, Y_NEIGHBOURS, "multiclass", ks=(1, 5), n_relevant=N_RELEVANT)
    assert m["precision@1"] == pytest.approx((1 + 0) / 2)
    assert m["precision@5"] == pytest.approx((2 / 5 + 2 / 5) / 2)
    assert m["n_queries"] == 2


def test_map_at_k_standard_and_retrieved_only_normalisation():
    # A: hits at ranks 1 and 3 -> P@1 = 1, P@3 = 2/3, sum 5/3.
    #    standard AP@5 = (5/3) / min(5, R=4) = 5/12;  retrieved-only AP@5 = (5/3) / 2 hits = 5/6
    # B: hits at ranks 2 and 4 -> P@2 = 1/2, P@4 = 1/2, sum 1.
    #    standard AP@5 = 1 / min(5, R=2) = 1/2;        retrieved-only AP@5 = 1 / 2 hits = 1/2
    standard = retrieval_metrics(Y_QUERY, Y_NEIGHBOURS, "multiclass", ks=(1, 5), n_relevant=N_RELEVANT)
    variant = retrieval_metrics(Y_QUERY, Y_NEIGHBOURS, "multiclass", ks=(1, 5))
    assert standard["map@5"] == pytest.approx((5 / 12 + 1 / 2) / 2)
    assert variant["map@5"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    # @1: A hits (1 / min(1, 4) = 1), B misses (0) under both normalisations
    assert standard["map@1"] == pytest.approx(0.5) and variant["map@1"] == pytest.approx(0.5)


def test_majority_accuracy_with_nearest_neighbour_tie_break():
    m = retrieval_metrics(Y_QUERY, Y_NEIGHBOURS, "multiclass", ks=(1, 3, 4, 5))
    # A: @1 [0] right; @3 [0 1 0] right; @4 [0 1 0 1] 2-2 tie -> class 0 is nearest -> right; @5 three 1s -> wrong
    # B: @1 [1] wrong; @3 [1 2 1] wrong; @4 [1 2 1 2] tie -> class 1 nearest -> wrong; @5 1 and 2 tie -> 1 -> wrong
    assert (m["acc@1"], m["acc@3"], m["acc@4"], m["acc@5"]) == (0.5, 0.5, 0.5, 0.0)


def test_multilabel_by_hand():
    y_query = np.array([[1, 0, 1], [0, 1, 0]])
    y_neighbours = np.array(
        [
            [[0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0]],  # relevant 0 1 1 0
            [[0, 1, 0], [0, 1, 1], [1, 1, 0], [0, 0, 0]],  # relevant 1 1 1 0
        ]
    )
    m = retrieval_metrics(y_query, y_neighbours, "multilabel", ks=(2, 4), n_relevant=np.array([3, 5]))
    assert m["precision@4"] == pytest.approx((2 / 4 + 3 / 4) / 2)
    # first: hits at 2, 3 -> (1/2 + 2/3) / min(4, 3) = 7/18; second: hits at 1, 2, 3 -> 3 / min(4, 5) = 3/4
    assert m["map@4"] == pytest.approx((7 / 18 + 3 / 4) / 2)
    # per-label majority @4: first -> [0 1 0] != [1 0 1]; second -> [0 1 0] == query
    # @2 with ties at exactly half taking the nearest neighbour's value: first label 0 is 1 of 2 -> nearest says 0
    assert m["acc@4"] == 0.5 and m["acc@2"] == 0.5


def test_retrieved_only_ap_is_never_below_standard():
    rng = np.random.default_rng(0)
    relevance = rng.random((200, 10)) < 0.3
    n_relevant = relevance.sum(axis=1) + rng.integers(0, 20, 200)
    standard = average_precision_at_k(relevance, 10, n_relevant)
    variant = average_precision_at_k(relevance, 10)
    assert np.all(variant >= standard - 1e-12)
    assert variant.mean() > standard.mean()


def test_query_with_nothing_relevant_scores_zero():
    assert average_precision_at_k(np.zeros((1, 5), bool), 5, [0])[0] == 0.0
    assert average_precision_at_k(np.zeros((1, 5), bool), 5)[0] == 0.0


def test_count_relevant():
    gallery = np.array([0, 0, 1, 2, 2, 2])
    assert count_relevant(np.array([0, 2, 3]), gallery, "multiclass").tolist() == [2, 3, 0]
    gallery_ml = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    assert count_relevant(np.array([[1, 0], [0, 0], [1, 1]]), gallery_ml, "multilabel").tolist() == [2, 0, 3]


def test_bad_input_raises():
    with pytest.raises(MedsearchError, match="retrieve at least 10"):
        retrieval_metrics(Y_QUERY, Y_NEIGHBOURS, "multiclass", ks=(10,))
    with pytest.raises(MedsearchError):
        retrieval_metrics(Y_QUERY, Y_NEIGHBOURS[:1], "multiclass")
    with pytest.raises(MedsearchError):
        retrieval_metrics(Y_QUERY, Y_NEIGHBOURS, "multiclass", ks=(1,), n_relevant=[1, 2, 3])
