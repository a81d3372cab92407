"""Saved network heads (mlp, dvme): the scaler and the network's weights as plain arrays plus JSON metadata in an
.npz, read without pickle, and applied by the same numpy forward pass the fitted estimator predicts with
(dvme_net.forward), so a loaded head gives the fitted head's probabilities exactly.

The metadata records each encoder block (for dvme, the parts of the fused model 'a+b', in column order) with
the ENCODER_FIELDS of its provenance, so ``mismatches`` can say which part of a store's model differs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import MedsearchError
from .dvme import DVMEClassifier, MLPHead, proba_from_logits
from .dvme_net import array_shapes, forward
from .head_checks import encoder_fields, encoder_mismatches, head_mismatches, is_encoder_record

NETWORK_FORMAT = "medsearch-network-head/1"
PREFIX = "net_"  # the network's arrays are stored as net_<name> beside scaler_mean, scaler_scale and metadata
ESTIMATORS = {"mlp": MLPHead, "dvme": DVMEClassifier}


def _parts(estimator, name: str):
    """(the fitted network head, scaler mean or None, scaler scale or None) of an eval head pipeline."""
    if not isinstance(estimator, Pipeline):
        raise MedsearchError("save_head expects a head built by medsearch.evaluation.heads (a Pipeline); refit it")
    scaler, clf = estimator.steps[0][1], estimator.steps[-1][1]
    clf = getattr(clf, "estimator_", clf)  # heads.NativeMultilabel holds the network head
    if not isinstance(clf, ESTIMATORS[name]) or not hasattr(clf, "arrays_"):
        raise MedsearchError(f"head {name!r} does not match the fitted estimator; it cannot be saved")
    if isinstance(scaler, StandardScaler):
        return clf, scaler.mean_, scaler.scale_
    return clf, None, None


def part_encoders(name: str, model_key: str, encoder: dict, n_blocks: int) -> tuple[list[str], list[dict]]:
    """(block names, their ENCODER_FIELDS): the model itself for mlp, each part of the fused model for dvme."""
    if name == "mlp" or n_blocks == 1:
        return [model_key], [encoder_fields(encoder)]
    parts = encoder.get("parts") if isinstance(encoder, dict) else None
    keys = model_key.split("+")
    if not isinstance(parts, dict) or len(keys) != n_blocks or any(k not in parts for k in keys):
        raise MedsearchError(f"a dvme head of {n_blocks} encoders needs the provenance of the fused model "
                             f"{model_key!r} (its 'parts', see evaluation.fusion)")
    return keys, [encoder_fields(parts[k]) for k in keys]


def save_network_head(path, estimator, *, name: str, task: str, classes, model_key: str, encoder: dict) -> None:
    """heads.save_head for mlp / dvme: arguments as there."""
    if not isinstance(encoder, dict):
        raise MedsearchError("save_head needs the encoder provenance of the embeddings (a dict, see store.provenance)")
    clf, mean, scale = _parts(estimator, name)
    d = int(clf.n_features_in_)
    blocks, encoders = part_encoders(name, model_key, encoder, len(clf.block_dims_))
    meta = {"format": NETWORK_FORMAT, "name": name, "task": task, "model_key": model_key,
            "label_names": np.asarray(classes).tolist(), "embedding_dim": d, "block_dims": list(clf.block_dims_),
            "hidden": int(clf.arrays_["attn_weight"].shape[0]), "blocks": blocks, "encoders": encoders}
    if clf.task_ != task or len(meta["label_names"]) != len(clf.classes_):
        raise MedsearchError(f"the head was fitted for a {clf.task_} task with {len(clf.classes_)} classes, "
                             f"not {task} with {len(meta['label_names'])}; it cannot be saved for these classes")
    arrays = {PREFIX + key: value for key, value in clf.arrays_.items()}
    arrays.update(scaler_mean=np.zeros(d) if mean is None else np.asarray(mean, dtype=np.float64),
                  scaler_scale=np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64),
                  metadata=np.array(json.dumps(meta)))
    with open(path, "wb") as fh:  # a file object keeps np.savez from appending '.npz'
        np.savez(fh, **arrays)


@dataclass(frozen=True)
class NetworkHead:
    """A saved mlp / dvme head evaluated in numpy; scores match heads.head_scores of the fitted head."""

    name: str
    task: str
    model_key: str
    classes: list
    block_dims: tuple
    blocks: list            # the model (mlp) or the fused model's parts (dvme), one per block
    encoders: list          # ENCODER_FIELDS of each block's embeddings
    arrays: dict
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    threshold: float = 0.5
    probabilities: bool = True

    @property
    def label_names(self) -> list[str]:
        return [str(c) for c in self.classes]

    @property
    def dim(self) -> int:
        return int(sum(self.block_dims))

    def mismatches(self, *, task: str, label_names, model_key: str, dim: int, provenance: dict) -> list[str]:
        """How a store's model differs from what this head was trained on (see heads.LinearHead.mismatches);
        for dvme, ``provenance`` is the fused model's, each part compared with its own block."""
        out = head_mismatches(self, task=task, label_names=label_names, model_key=model_key, dim=dim)
        if len(self.blocks) == 1:
            return out + encoder_mismatches(self.encoders[0], provenance)
        parts = provenance.get("parts", {}) if isinstance(provenance, dict) else {}
        for block, trained in zip(self.blocks, self.encoders):
            out += encoder_mismatches(trained, parts.get(block, {}), where=f" of {block}")
        return out

    def _forward(self, X):
        X = np.asarray(X)
        X = X.astype(np.float32 if X.dtype == np.float32 else np.float64, copy=False)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise MedsearchError(f"head expects vectors of {self.dim} dimensions, got shape {X.shape}; "
                                 f"use embeddings from model {self.model_key!r}")
        # standardised in X's own precision, as StandardScaler.transform does: the same numbers
        scaled = X - self.scaler_mean.astype(X.dtype)
        return forward(self.arrays, self.block_dims, scaled / self.scaler_scale.astype(X.dtype))

    def decision_function(self, X) -> np.ndarray:
        logits = self._forward(X)[0]
        return logits[:, 0] if self.task == "binary" else logits

    def predict_proba(self, X) -> np.ndarray:
        return proba_from_logits(self._forward(X)[0], self.task)

    def scores(self, X) -> np.ndarray:
        """head_scores' convention: the positive class's probability (binary), else every column."""
        p = self.predict_proba(X)
        return p[:, 1] if self.task == "binary" else p

    def attention(self, X) -> np.ndarray:
        return self._forward(X)[1]

    def predict(self, X) -> np.ndarray:
        decision = self.decision_function(X)
        if self.task == "multiclass":
            return np.asarray(self.classes)[decision.argmax(axis=1)]
        if self.task == "binary":
            return np.asarray(self.classes)[(decision > 0).astype(int)]
        return (decision > 0).astype(int)


def load_network_head(data, meta: dict, bad: str) -> NetworkHead:
    """The NetworkHead in an open .npz ``data`` whose metadata is ``meta``; ``bad``: the start of the error."""
    try:
        name, task, classes, key = meta["name"], meta["task"], meta["label_names"], str(meta["model_key"])
        dims = tuple(int(d) for d in meta["block_dims"])
        hidden, blocks, encoders, d = int(meta["hidden"]), meta["blocks"], meta["encoders"], int(meta["embedding_dim"])
    except (KeyError, TypeError, ValueError):
        raise MedsearchError(f"{bad} (incomplete metadata); re-save it") from None
    n_out = {"binary": 1, "multiclass": len(classes), "multilabel": len(classes)}.get(task) \
        if isinstance(classes, list) else None
    if (name not in ESTIMATORS or n_out is None or (task == "binary" and len(classes) != 2) or not dims
            or min(dims) < 1 or sum(dims) != d or hidden < 1 or not isinstance(blocks, list)
            or not isinstance(encoders, list) or len(blocks) != len(dims) or len(encoders) != len(dims)
            or not all(map(is_encoder_record, encoders))):
        raise MedsearchError(f"{bad} (head {name!r}, task {task!r}, metadata fields); re-save it")
    shapes = {**array_shapes(dims, hidden, n_out)}
    arrays = {}
    for key_, shape in {**{PREFIX + k: s for k, s in shapes.items()}, "scaler_mean": (d,), "scaler_scale": (d,)}.items():
        if key_ not in data.files or data[key_].dtype.kind != "f" or data[key_].shape != shape:
            raise MedsearchError(f"{bad} (array {key_} is missing or has the wrong type or shape); re-save it")
        arrays[key_] = np.asarray(data[key_], dtype=np.float64)
        if not np.isfinite(arrays[key_]).all():
            raise MedsearchError(f"{bad} (non-finite values in {key_}); re-save it")
    if (arrays["scaler_scale"] <= 0).any():
        raise MedsearchError(f"{bad} (non-positive scales); re-save it")
    net = {k[len(PREFIX):]: v for k, v in arrays.items() if k.startswith(PREFIX)}
    return NetworkHead(name, task, key, classes, dims, [str(b) for b in blocks], encoders, net,
                       arrays["scaler_mean"], arrays["scaler_scale"])
