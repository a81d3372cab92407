"""Input checks shared by the solvers' estimators, with scikit-learn's own helpers and messages.

The estimators take 1-D class values or a 2-D 0/1 label matrix (multilabel: one problem per column), dense
only: their solvers work on Gram matrices or dense Newton systems.
"""
from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ..errors import MedsearchError


class SolverInputError(MedsearchError, ValueError):
    """Input or parameters a solver cannot take: a user error for the CLI, a ValueError for scikit-learn."""


def label_targets(y) -> np.ndarray:
    """y as class values (1-D) or a 0/1 label matrix (2-D, multilabel), after scikit-learn's target checks.

    A single column that is not 0/1 is a column vector of classes: flattened with scikit-learn's
    DataConversionWarning (column_or_1d). Other 2-D y that is not 0/1 is refused.
    """
    y = y.toarray() if sparse.issparse(y) else np.asarray(y)
    if y.ndim == 2 and not (y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all()):
        if y.shape[1] != 1:
            raise SolverInputError("2-D y must be a 0/1 label matrix (multilabel); multiclass-multioutput "
                                   "targets are not supported")
        y = column_or_1d(y, warn=True)
    check_classification_targets(y)
    return y


def check_two_classes(y: np.ndarray) -> None:
    """scikit-learn's LinearSVC refusal of 1-D targets with a single class (its message)."""
    classes = np.unique(y) if y.ndim == 1 else None
    if classes is not None and classes.size < 2:
        raise SolverInputError("This solver needs samples of at least 2 classes in the data, but the data "
                               f"contains only one class: {classes[0]!r}")


def dense_multilabel_tags(tags):
    """scikit-learn tags of an estimator that refuses sparse X and takes 2-D 0/1 y as multilabel (only)."""
    tags.input_tags.sparse = False
    tags.target_tags.multi_output = tags.classifier_tags.multi_label = True
    return tags
