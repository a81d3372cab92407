"""EvalOptions: the one home of `eval`'s defaults, which the CLI reads, and its checks."""
import dataclasses

import pytest

from click.testing import CliRunner

from medsearch.cli import main
from medsearch.cli.eval import DEFAULTS, eval_cmd
from medsearch.errors import MedsearchError
from medsearch.evaluation.heads import C_GRID, SAVABLE_HEADS
from medsearch.evaluation.eval_options import DEFAULT_HEADS, LINEAR_SVC_MAX_ITER, SPLITS, EvalOptions
from medsearch.search.knn import WEIGHTS



def _param(name):
    return next(p for p in eval_cmd.params if p.name == name)


def test_cli_defaults_are_the_options_defaults(monkeypatch):
    """`medsearch eval --index X` with no other flag hands evaluate() exactly EvalOptions()."""
    import medsearch.evaluation.evaluate as evaluate_module

    seen = {}

    def fake_evaluate(index_dir, options):
        seen.update(index_dir=index_dir, options=options)
        raise MedsearchError("stop")

    monkeypatch.setattr(evaluate_module, "evaluate", fake_evaluate)
    res = CliRunner().invoke(main, ["eval", "--index", "X"])
    assert res.exit_code == 2 and "stop" in res.output
    assert seen == {"index_dir": "X", "options": EvalOptions()}
    assert DEFAULTS == EvalOptions() and DEFAULTS.heads == DEFAULT_HEADS
    assert _param("heads").default == "lr,linear-svc,svc-linear,svc-rbf" and _param("ks").default == "1,5,10"
    assert EvalOptions().linear_svc_max_iter == LINEAR_SVC_MAX_ITER == _param("linear_svc_max_iter").default == 1000


def test_cli_choices_and_help_match_the_library():
    """Written out in cli/eval.py so that the CLI starts without scikit-learn and FAISS."""
    assert list(_param("split").type.choices) == list(SPLITS)
    assert sorted(_param("knn_weights").type.choices) == sorted(WEIGHTS)
    assert list(_param("save_head").type.choices) == list(SAVABLE_HEADS)
    assert f"default {','.join(f'{c:g}' for c in C_GRID)})" in _param("C").help


def test_checked_normalises_heads_and_ks():
    options = EvalOptions(heads=" lr, svc-rbf,lr,", ks=[1, 3]).checked()
    assert options.heads == ("lr", "svc-rbf") and options.ks == (1, 3)
    assert EvalOptions(heads=()).checked().heads == ()
    assert set(EvalOptions(C=(1.0,)).grids()) == set(DEFAULT_HEADS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.folds = 3


@pytest.mark.parametrize("changes, flag", [(dict(heads=("forest",)), "unknown head"), (dict(split="random"), "split"),
                                           (dict(save_head="lr", heads=("svc-rbf",)), "--save-head")])
def test_checked_names_the_flag(changes, flag):
    with pytest.raises(MedsearchError, match=flag):
        EvalOptions(**changes).checked()
