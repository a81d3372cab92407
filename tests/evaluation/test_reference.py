import pytest

from medsearch.errors import MedsearchError
from medsearch.evaluation.reference import anchor_for, reference_names, reference_table


def test_names_cover_the_paper_and_medmnist_anchors():
    assert reference_names() == ["HAM10000", "PAD-UFES-20", "ODIR", "CBIS-DDSM", "CheXpert", "RetinaMNIST", "BreastMNIST"]


def test_lookup_is_case_insensitive_and_accepts_our_dataset_keys():
    assert reference_table("ham10000") == reference_table("HAM10000") == reference_table("skin-isic2018")
    assert reference_table(" Retina-ODIR ")[0]["dataset"] == "ODIR"
    assert anchor_for("breastmnist")["reference"] == "BreastMNIST"
    assert anchor_for("chestmnist") is None


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(MedsearchError, match="HAM10000"):
        reference_table("imagenet")


def test_every_figure_has_a_source_and_every_gap_a_note():
    for name in reference_names():
        for row in reference_table(name):
            assert row["source"] and row["table"]
            if row["auc"] is None:
                assert "not recorded" in row["note"]
            else:
                assert 0.5 < row["auc"] <= 1.0
                assert row["kind"] == "benchmark" or row["model"]


def test_known_figures():
    def figure(name, model, head=None):
        (row,) = [r for r in reference_table(name) if r["model"] == model and (head is None or r["head"] == head)]
        return row["auc"]

    assert figure("HAM10000", "CLIP", "LR") == 0.9586
    assert figure("HAM10000", "ResNet50") == 0.933
    assert figure("ODIR", "ResNet50") == 0.8544 and figure("ODIR", "CLIP") == 0.8577
    assert figure("RetinaMNIST", "ResNet-50 (28)") == 0.726
    assert figure("BreastMNIST", "ResNet-18 (28)") == 0.901
    assert "arXiv:2412.09445" in reference_table("HAM10000")[0]["source"]
