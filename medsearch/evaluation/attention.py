"""The attention a DVME head gives each encoder, as the evaluation reports it: per test image from the fitted
head, then averaged over every test row and over the rows of each class."""
from __future__ import annotations

import numpy as np


def attention_of(estimator, X) -> np.ndarray:
    """(n, encoders) attention weights of a fitted dvme head pipeline (scaler, head or NativeMultilabel) on X."""
    head = estimator.steps[-1][1]
    head = getattr(head, "estimator_", head)
    return head.attention(estimator[:-1].transform(np.asarray(X)))


def attention_summary(weights: np.ndarray, y: np.ndarray, task: str, label_names, encoders) -> dict:
    """{'encoders': names, 'mean': mean weight per encoder, 'per_class': {class: mean weight per encoder over
    its rows (multilabel: the rows where the label is positive)}, 'n': rows}; a class without rows is left out."""
    y = np.asarray(y)
    per_class = {}
    for c, name in enumerate(label_names):
        rows = y[:, c] == 1 if task == "multilabel" else y == c
        if rows.any():
            per_class[str(name)] = [round(float(v), 4) for v in weights[rows].mean(axis=0)]
    return {"encoders": list(encoders), "mean": [round(float(v), 4) for v in weights.mean(axis=0)],
            "per_class": per_class, "n": int(weights.shape[0])}
