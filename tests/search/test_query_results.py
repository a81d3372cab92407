"""Query options and results: one home per default (the CLI's flags read them), and to_json gives exactly the
dict `medsearch query --json` prints, with absent optional parts left out."""
import json

import pytest

from medsearch.cli import query as cli_query
from medsearch.search.query_options import QueryOptions
from medsearch.search.query_results import HeadOutput, Neighbour, QueryResult


def test_the_cli_takes_its_defaults_from_query_options():
    defaults = QueryOptions()
    params = {p.name: p for p in cli_query.query_cmd.params}
    assert params["k"].default == defaults.k == 10
    assert params["weighting"].default == defaults.weighting == "similarity"
    assert params["device"].default == defaults.device == "cpu"
    assert params["model"].default is defaults.model is None and params["head"].default is defaults.head is None
    assert params["include_self"].default is (not defaults.exclude_self) is False
    assert tuple(params["exclude_ids"].default) == defaults.exclude_ids == ()


def test_options_are_frozen():
    with pytest.raises(AttributeError):
        QueryOptions().k = 3


def test_result_json_keeps_the_keys_and_their_order():
    grouped = Neighbour(rank=1, row=4, id="a/1.png", labels=["x"], similarity=0.98765, source="a/1.png", group="p1")
    plain = Neighbour(rank=2, row=0, id="b/2.png", labels=[], similarity=0.5, source="b/2.png")
    result = QueryResult(query="q.png", model="m", excluded_self=True, self_ids=["q"], excluded_ids=["t/0"],
                         neighbours=[grouped, plain], vote={"x": 0.6, "y": 0.4})
    out = result.to_json()
    assert list(out) == ["query", "model", "excluded_self", "self_ids", "excluded_ids", "neighbours", "vote"]
    assert list(out["neighbours"][0]) == ["rank", "row", "id", "labels", "similarity", "source", "group"]
    assert "group" not in out["neighbours"][1] and out["neighbours"][1]["labels"] == []
    assert json.loads(json.dumps(out)) == out
    result.head = HeadOutput("lr", probabilities={"x": 0.7, "y": 0.3})
    assert list(result.to_json())[-1] == "head" and result.to_json()["head"] == {"name": "lr",
                                                                                 "probabilities": {"x": 0.7, "y": 0.3}}
    result.head = HeadOutput("linear-svc", decision_scores={"y": -0.25})
    assert result.to_json()["head"] == {"name": "linear-svc", "decision_scores": {"y": -0.25}}
