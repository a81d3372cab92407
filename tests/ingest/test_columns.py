"""Tests for medsearch.ingest.columns: which manifest columns hold the labels, and how they are read."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsearch.ingest.datasets import scan
from medsearch.errors import MedsearchError

from ..conftest import make_image, needs_shared
from .conftest import write_csv, write_images


def test_csv_one_hot_is_multiclass_and_multi_hot_is_multilabel(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(4):
        make_image(tmp_path / "images" / f"{i}.png", i % 2, i)
    write_csv(tmp_path / "labels.csv", ["image", "A", "B", "C"], [["0.png", 1, 0, 0], ["1.png", 0, 1, 0], ["2.png", 0, 0, 1], ["3.png", 1, 0, 0]])
    ds = scan(tmp_path)
    assert ds.task == "multiclass" and ds.label_names == ["A", "B", "C"] and ds.labels.tolist() == [0, 1, 2, 0]
    write_csv(tmp_path / "labels.csv", ["filename", "ID", "A", "B"], [["0.png", 7, 1, 1], ["1.png", 7, 0, 1], ["2.png", 8, 0, 0], ["3.png", 8, 1, 0]])
    ds = scan(tmp_path)
    assert ds.task == "multilabel" and ds.labels.shape == (4, 2) and ds.groups == ["7", "7", "8", "8"]


def test_named_label_column_override(csv_dataset):
    with pytest.raises(MedsearchError, match="no column 'dx'"):
        scan(csv_dataset, label_col="dx")


def test_covariate_is_not_read_as_a_label(tmp_path):
    """`image,label,male` with 0/1 in both: one label plus a covariate, or two labels? Refused, naming both flags."""
    write_images(tmp_path)
    write_csv(tmp_path / "labels.csv", ["image", "label", "male"],
               [["0.png", 0, 1], ["1.png", 1, 1], ["2.png", 0, 0], ["3.png", 1, 0]])
    with pytest.raises(MedsearchError) as err:
        scan(tmp_path)
    msg = str(err.value)
    assert "--label-col label" in msg and "--label-cols label,male" in msg and "\n" not in msg
    ds = scan(tmp_path, label_col="label")
    assert ds.task == "binary" and ds.labels.tolist() == [0, 1, 0, 1] and "columns ignored: male" in ds.reading
    ds = scan(tmp_path, label_cols=["label", "male"])
    assert ds.task == "multilabel" and ds.label_names == ["label", "male"] and "--label-cols" in ds.reading
    with pytest.raises(MedsearchError, match="not both"):
        scan(tmp_path, label_col="label", label_cols=["label", "male"])


def test_label_column_with_its_own_one_hot_code_is_one_reading(tmp_path):
    """ISIC 2018's layout: a label column and the one-hot columns that encode it agree, so nothing is guessed."""
    write_images(tmp_path)
    write_csv(tmp_path / "labels.csv", ["image", "label", "A", "B", "C"],
               [["0.png", 2, 0, 0, 1], ["1.png", 0, 1, 0, 0], ["2.png", 1, 0, 1, 0], ["3.png", 2, 0, 0, 1]])
    ds = scan(tmp_path)
    assert ds.label_names == ["A", "B", "C"] and ds.labels.tolist() == [2, 0, 1, 2]
    assert "agrees with them" in ds.reading
    # one row where they disagree: two readings again
    write_csv(tmp_path / "labels.csv", ["image", "label", "A", "B", "C"],
               [["0.png", 2, 0, 0, 1], ["1.png", 0, 1, 0, 0], ["2.png", 1, 0, 1, 0], ["3.png", 0, 0, 0, 1]])
    with pytest.raises(MedsearchError, match="can be read two ways"):
        scan(tmp_path)


def test_real_odir_needs_its_label_columns_named():
    """ODIR's labels.csv has the per-image diagnosis `labels` beside 8 patient-level 0/1 columns."""
    root = needs_shared("retina-odir")
    with pytest.raises(MedsearchError, match="--label-cols N,D,G,C,A,H,M,O"):
        scan(root)
    ds = scan(root, label_cols=list("NDGCAHMO"))
    assert ds.task == "multilabel" and "columns ignored: labels" in ds.reading and ds.groups is not None


LABELISH = ("label", "dx")


POOL = ("label", "dx", "male", "A", "B", "C", "age")


VALUES = {"01": ["0", "1"], "01f": ["0.0", "1.0"], "int": ["0", "1", "2", "3"], "str": ["a", "b", "c"]}


def _partition(values) -> set:
    return {frozenset(i for i, v in enumerate(values) if v == x) for x in set(values)}


@pytest.fixture(scope="module")
def prop_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("manifests")
    write_images(root, 8)
    return root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_label_reading_is_unambiguous_or_an_error(prop_root, data):
    """Over random manifests: an ambiguous one (a column named like a label and two or more other 0/1 columns that
    are not its one-hot code) is always an error naming both flags; any manifest that is read is read the one way
    it allows, with the labels that way gives, and the reading is stated."""
    cols = data.draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=5, unique=True))
    n = data.draw(st.integers(2, 8))
    table = {}
    for c in cols:
        kind = data.draw(st.sampled_from(sorted(VALUES)))
        table[c] = [data.draw(st.sampled_from(VALUES[kind])) for _ in range(n)]
    write_csv(prop_root / "labels.csv", ["image", *cols], [[f"{i}.png", *(table[c][i] for c in cols)] for i in range(n)])

    named = next((c for c in LABELISH if c in cols), None)
    hot = [c for c in cols if all(v in ("0", "1", "0.0", "1.0") for v in table[c])]
    as_int = {c: [int(float(v)) for v in table[c]] for c in hot}
    one_hot_code = (named is not None and named not in hot and len(hot) >= 2
                    and all(sum(as_int[c][i] for c in hot) == 1 for i in range(n))
                    and _partition(table[named]) == _partition([next(c for c in hot if as_int[c][i]) for i in range(n)]))
    ambiguous = named is not None and len(hot) >= 2 and not one_hot_code
    try:
        ds = scan(prop_root)
    except MedsearchError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg
        if ambiguous:
            assert "--label-col" in msg and "--label-cols" in msg
            for flag in ({"label_col": named}, {"label_cols": hot}):  # either flag settles it
                try:
                    scan(prop_root, **flag)
                except MedsearchError as again:
                    assert "two ways" not in str(again)
        return
    assert not ambiguous, f"read {cols} without an error: {ds.reading}"
    assert ds.reading
    if len(hot) >= 2:  # one 0/1 column per label
        assert ds.label_names == hot and f"0/1 columns {', '.join(hot)}" in ds.reading
        expected = np.array([as_int[c] for c in hot]).T
        got = ds.labels if ds.labels.ndim == 2 else np.eye(len(hot), dtype=int)[ds.labels]
        assert (got == expected).all()
    else:  # one label column
        assert f"from column '{named}'" in ds.reading
        assert _partition(ds.labels.tolist()) == _partition(table[named])
