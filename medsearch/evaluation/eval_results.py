"""What `medsearch eval` returns: an EvalResult and the parts it is made of.

``EvalResult.to_json()`` is the dict `eval --json` prints and the report folder's results.json holds
(NaN becomes null there). Fields are listed in the order of the JSON keys.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..results import JsonResult

FORMAT = "medsearch-eval/1"


@dataclass
class StoreInfo(JsonResult):
    """The store evaluated: its task and labels, rows in it and rows every evaluated model embedded, whether
    it has patient groups and an official split, and where and when it was indexed (as recorded)."""

    task: str
    label_names: list[str]
    n_rows: int
    n_evaluated: int
    has_groups: bool
    has_official_split: bool
    dataset_root: str | None
    layout: str | None
    created: str | None
    updated: str | None


@dataclass
class EvalConfig(JsonResult):
    """The options as used: model keys resolved from the store, heads as a list, each head's grid, and the
    workers the grid search ran on."""

    models: list[str]
    heads: list[str]
    knn: bool
    retrieval: bool
    split: str
    test_size: float
    cv: int | None
    folds: int
    seed: int
    ks: list[int]
    knn_k: int | None
    knn_weights: str
    n_boot: int
    scale: bool
    grids: dict[str, dict]
    linear_svc_max_iter: int | None
    n_jobs: int
    # in the JSON only when an approximation applied or its limits were changed (approximation.py)
    approximation_limits: dict | None = None
    # in the JSON only with --train-fractions (label-efficiency curves)
    train_fractions: list[float] | None = None
    fraction_seeds: int | None = None
    # in the JSON only with --where: the header conditions the evaluated rows met
    where: list[str] | None = None

    OMIT_WHEN_NONE = ("approximation_limits", "train_fractions", "fraction_seeds", "where")


@dataclass
class Round(JsonResult):
    """One train/test round: sizes, patients on both sides (None without groups), test rows whose image
    bytes are also a training row's, and the store rows on each side."""

    n_train: int
    n_test: int
    groups_in_both: int | None
    test_rows_with_a_training_copy: int
    train_rows: list[int]
    test_rows: list[int]


@dataclass
class SplitInfo(JsonResult):
    """How rows were split: the mode used ('official' | 'grouped' | 'paper' | 'stratified') and the one asked
    for, a sentence for the report, the rounds, the mean training size and the test rows over all rounds."""

    mode: str
    requested: str
    description: str
    cv: int | None
    seed: int
    grouped: bool
    rounds: list[Round]
    n_train: int
    n_test: int


@dataclass
class Reference(JsonResult):
    """Published figures printed beside ours: the reference dataset, the name asked for, how close our dataset
    is to it (None when asked for by its own name), and the rows of reference.reference_table."""

    name: str
    requested: str
    anchor_note: str | None
    rows: list[dict]


@dataclass
class MethodScores(JsonResult):
    """A head or the k-NN vote on the pooled test rows: AUC with its bootstrap CI, accuracy and macro
    precision/recall/F1, AUC per class (per label; binary: the positive class), and the tuning: chosen
    params, CV AUC and the grid's results (one per round under --cv), fit time and solver notes; and, in the
    JSON only when one applied, the approximation that bounded its cost (approximation.record), and for a head
    that weighs a fused model's encoders (dvme) the mean attention each encoder got, over all test rows and per
    class (attention.attention_summary)."""

    OMIT_WHEN_NONE = ("approximation", "attention")

    method: str
    label: str
    kind: str  # 'head' | 'knn'
    auc: float
    auc_ci: list[float]
    accuracy: float
    precision: float
    recall: float
    f1: float
    n_test: int
    per_class_auc: dict[str, float]
    params: dict | list[dict]
    cv_auc: float | None | list
    cv_results: list
    fit_seconds: float
    not_converged: int
    n_fits: int
    notes: list[str]
    approximation: dict | None = None
    attention: dict | None = None


@dataclass
class RetrievalScores(JsonResult):
    """Test images querying the training images: precision@k, map@k, acc@k per cut-off and n_queries."""

    method: str  # 'retrieval'
    label: str
    kind: str  # 'retrieval'
    metrics: dict[str, float]
    fit_seconds: float


@dataclass
class Delta(JsonResult):
    """A method's AUC minus the best method's (``vs``), with a paired bootstrap CI and p-value."""

    vs: str
    delta: float
    lo: float
    hi: float
    p_value: float
    n_boot: int


@dataclass
class ModelEvaluation(JsonResult):
    """One model: mean training size, pooled test rows, every method's scores (heads, 'knn', 'retrieval'),
    the best method by AUC and the others' deltas against it, the encoder's provenance and dimension, and
    the saved head's path (in the JSON only when a head was saved)."""

    OMIT_WHEN_NONE = ("saved_head",)

    n_train: int
    n_test: int
    methods: dict[str, MethodScores | RetrievalScores]
    best: str | None
    deltas: dict[str, Delta]
    provenance: dict
    dim: int
    saved_head: str | None = None


@dataclass
class CurvePoint(JsonResult):
    """One fraction and seed of a label-efficiency curve: the subset's training labels (rows), patients or
    rows drawn (units), rows the per-class floor added (fractions.py), the tuning folds used, each method's
    test AUC, and for each method that could not be computed on this subset the reason (and no AUC)."""

    fraction: float
    seed: int
    n_train: int
    n_units: int
    floor_rows: int
    folds: int | None
    auc: dict[str, float | None]
    not_computable: dict[str, str]


@dataclass
class CurveBand(JsonResult):
    """One method at one fraction, over the seeds whose point was computable: the mean test AUC and its
    band (min and max over the seeds; also the standard deviation), the mean training labels, and the seeds
    counted and left out (with their reasons)."""

    fraction: float
    method: str
    label: str
    n_train: float
    auc: float | None
    lo: float | None
    hi: float | None
    sd: float | None
    n_seeds: int
    not_computable: list[str]


@dataclass
class LabelCurves(JsonResult):
    """One model's label-efficiency curves: how the subsets were drawn, the band's definition, every point
    (one per fraction and seed) and the bands (one per fraction and method)."""

    fractions: list[float]
    seeds: int
    subsets: str
    band: str
    test_rows: int
    points: list[CurvePoint]
    bands: list[CurveBand]


@dataclass
class EvalResult(JsonResult):
    """Everything `medsearch eval` found, where its report folder is, and (in the JSON only with
    --train-fractions) each model's label-efficiency curves."""

    OMIT_WHEN_NONE = ("curves", "across_models")

    format: str
    medsearch_version: str
    created: str
    index_dir: str
    store: StoreInfo
    config: EvalConfig
    split: SplitInfo
    notes: list[str]
    warnings: list[str]
    reference: Reference | None
    models: dict[str, ModelEvaluation]
    report_dir: str
    curves: dict[str, LabelCurves] | None = None
    # with two models or more: paired deltas across them (across_models.AcrossModels)
    across_models: JsonResult | None = None
