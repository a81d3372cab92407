"""The network behind the DVME and MLP heads: torch for training, numpy for every prediction.

Each encoder's block of columns is projected into a shared space (Linear, LayerNorm, ReLU); a shared scoring
vector gives each projected block a score per image, a softmax over the blocks turns the scores into
attention weights, and the weighted sum of the projections is classified by one Linear layer (dropout before
it in training). With one block the attention is 1 and the network is a one-hidden-layer MLP.

Training (``train``) runs on CPU, seeded: initial weights, dropout masks and the batch order all come from
one torch.Generator seeded with ``random_state``, never from torch's global RNG, so fits running side by side
in threads (the fast search backend) neither disturb each other nor the caller. Early stopping watches the
loss on a held-out validation part and restores the best epoch. Predictions (``forward``) use the
trained weights as float64 numpy arrays, the same arrays a saved head stores, so an estimator and its saved
copy give identical probabilities, whatever the batch of rows.
"""
from __future__ import annotations

import copy
import threading
from contextlib import contextmanager

import numpy as np

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm's default, used by the numpy forward pass too
MIN_DELTA = 1e-4  # a validation loss lower by less is no improvement (scikit-learn MLPClassifier's tol)
_lock = threading.Lock()
_active = {"fits": 0, "saved": None}  # torch's global settings are changed by the first fit and restored by the last


def _torch():
    import torch  # imported when a network is trained, so that loading a saved head needs only numpy

    return torch


def build_net(block_dims, hidden: int, n_out: int, dropout: float, generator):
    """The untrained network (torch.nn.Module): per-block projections, attention scorer, classifier; initial
    weights as torch's Linear draws them (uniform within 1/sqrt(fan_in)), from ``generator``."""
    torch = _torch()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.bounds = np.cumsum([0, *block_dims]).tolist()
            self.proj = nn.ModuleList(nn.Linear(d, hidden) for d in block_dims)
            self.norm = nn.ModuleList(nn.LayerNorm(hidden, eps=LAYER_NORM_EPS) for _ in block_dims)
            self.attn = nn.Linear(hidden, 1, bias=False)  # a bias would cancel in the softmax
            self.out = nn.Linear(hidden, n_out)
            with torch.no_grad():
                for layer in [*self.proj, self.attn, self.out]:
                    bound = layer.in_features ** -0.5
                    for p in layer.parameters():
                        p.uniform_(-bound, bound, generator=generator)

        def forward(self, x):
            z = torch.stack([torch.relu(norm(proj(x[:, a:b]))) for proj, norm, a, b in
                             zip(self.proj, self.norm, self.bounds[:-1], self.bounds[1:])], dim=1)  # (n, m, h)
            weights = torch.softmax(self.attn(z).squeeze(-1), dim=1)                                 # (n, m)
            combined = (weights.unsqueeze(-1) * z).sum(dim=1)
            if self.training and dropout > 0:
                keep = torch.rand(combined.shape, generator=generator) >= dropout
                combined = combined * keep / (1.0 - dropout)
            return self.out(combined)

    return Net()


@contextmanager
def deterministic(threads: int):
    """Deterministic torch algorithms on ``threads`` intra-op threads while any fit runs; torch's own settings
    are restored when the last of the fits running at once ends."""
    torch = _torch()
    with _lock:
        if _active["fits"] == 0:
            _active["saved"] = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
            torch.set_num_threads(max(1, threads))
            torch.use_deterministic_algorithms(True)
        _active["fits"] += 1
    try:
        yield
    finally:
        with _lock:
            _active["fits"] -= 1
            if _active["fits"] == 0:
                torch.set_num_threads(_active["saved"][0])
                torch.use_deterministic_algorithms(_active["saved"][1])


def _loss_fn(kind: str):
    nn = _torch().nn
    return nn.CrossEntropyLoss() if kind == "ce" else nn.BCEWithLogitsLoss()


def train(net, X, T, kind: str, valid, *, lr: float, weight_decay: float, max_epochs: int, patience: int,
          batch_size: int, generator) -> tuple[int, bool]:
    """Train ``net`` on rows of X (float32) with targets T (class indices for kind 'ce', 0/1 floats for 'bce');
    ``valid``: a boolean mask of the rows held out for early stopping (none held out: every epoch runs).
    Returns (epochs run, whether early stopping ended the run); the best epoch's weights are left in ``net``."""
    torch = _torch()
    X, T = torch.from_numpy(X), torch.from_numpy(T)
    fit_rows = torch.from_numpy(np.flatnonzero(~valid))
    X_val, T_val = X[torch.from_numpy(valid)], T[torch.from_numpy(valid)]
    loss_fn = _loss_fn(kind)
    optimiser = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, waited, epoch = np.inf, None, 0, 0
    for epoch in range(1, max_epochs + 1):
        net.train()
        for batch in fit_rows[torch.randperm(fit_rows.numel(), generator=generator)].split(batch_size):
            optimiser.zero_grad()
            loss_fn(net(X[batch]), T[batch]).backward()
            optimiser.step()
        if X_val.shape[0] == 0:
            continue
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net(X_val), T_val))
        if val_loss < best - MIN_DELTA:
            best, best_state, waited = val_loss, copy.deepcopy(net.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    stopped = best_state is not None and epoch < max_epochs
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return epoch, stopped


def net_arrays(net, n_blocks: int) -> dict[str, np.ndarray]:
    """The trained weights as float64 arrays, the names a saved head stores them under."""
    state = {key: value.detach().cpu().numpy().astype(np.float64) for key, value in net.state_dict().items()}
    arrays = {}
    for i in range(n_blocks):
        arrays[f"proj{i}_weight"], arrays[f"proj{i}_bias"] = state[f"proj.{i}.weight"], state[f"proj.{i}.bias"]
        arrays[f"norm{i}_weight"], arrays[f"norm{i}_bias"] = state[f"norm.{i}.weight"], state[f"norm.{i}.bias"]
    arrays["attn_weight"] = state["attn.weight"][0]
    arrays["out_weight"], arrays["out_bias"] = state["out.weight"], state["out.bias"]
    return arrays


def array_shapes(block_dims, hidden: int, n_out: int) -> dict[str, tuple]:
    """The shape of every array of net_arrays, to check a saved head's arrays against."""
    shapes = {"attn_weight": (hidden,), "out_weight": (n_out, hidden), "out_bias": (n_out,)}
    for i, d in enumerate(block_dims):
        shapes.update({f"proj{i}_weight": (hidden, d), f"proj{i}_bias": (hidden,),
                       f"norm{i}_weight": (hidden,), f"norm{i}_bias": (hidden,)})
    return shapes


def forward(arrays: dict, block_dims, X) -> tuple[np.ndarray, np.ndarray]:
    """(logits (n, n_out), attention (n, n_blocks)) of the network in ``arrays`` (net_arrays) on rows X."""
    X = np.asarray(X, dtype=np.float64)
    bounds = np.cumsum([0, *block_dims])
    z = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        h = X[:, a:b] @ arrays[f"proj{i}_weight"].T + arrays[f"proj{i}_bias"]
        h = (h - h.mean(axis=1, keepdims=True)) / np.sqrt(h.var(axis=1, keepdims=True) + LAYER_NORM_EPS)
        z.append(np.maximum(h * arrays[f"norm{i}_weight"] + arrays[f"norm{i}_bias"], 0.0))
    z = np.stack(z, axis=1)                                   # (n, m, h)
    scores = z @ arrays["attn_weight"]                        # (n, m)
    scores = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights = scores / scores.sum(axis=1, keepdims=True)
    combined = (weights[:, :, None] * z).sum(axis=1)
    return combined @ arrays["out_weight"].T + arrays["out_bias"], weights
