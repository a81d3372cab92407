"""`medsearch index --engine ray`: images decoded and embedded by a pool of Ray actors, on this machine or a
cluster, while this process stays the store's single writer.

Ray Data runs the pipeline: one input item per aligned batch (the batches the local engine forms, so a
resumed or re-run batch holds the same rows), decoded and encoded in a pool of actors that each load the
encoder once. CPU actors take one core each and decode their own batch before encoding it, the local
engine's taking turns, one thread per core instead of several threads contending for each; with
``gpus_per_worker`` the decoding runs in separate CPU tasks that feed the GPU actors. Finished batches stream
back to this process, which journals and commits them exactly as it does for the local engine, so a crash of
a worker, a node, the cluster or this driver loses nothing committed, and a re-run embeds only what is
missing. Ray retries the work of a worker or node that died (actors restarted, tasks re-run); a batch
delivered twice is kept once.

Every actor reports the weights it loaded: a worker whose checkpoint differs from this process's is
refused, since its embeddings would silently belong to another model.
"""
from __future__ import annotations

import contextlib
import logging
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from ..errors import MedsearchError
from ..options import available_cores
from .embed import Batch, aligned_batches, decode_row, encode_batch
from .encoders import Preprocess
from .log import log
from .sources import RowSource

LOCAL_OBJECT_STORE_BYTES = 256 << 20   # Ray's shared-memory object store when it starts on this machine
# A CPU actor's process does nothing but forward passes, which Ray Data runs in a thread of its own: glibc
# gives that thread its own arena, where embed.reuse_freed_memory's settings do not hold, so every pass would
# map and zero-fill its activations again. One arena, kept mapped, set for the whole process by environment.
CPU_ACTOR_MALLOC = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31 - 1)}
# What one CPU actor holds: torch and the model, plus its batch's activations, a multiple of the input batch
# (measured in benchmarks/RESULTS.md, "The Ray engine"); requested as Ray's `memory` resource, so that a node
# with many cores and little memory runs fewer actors rather than being killed for memory.
ACTOR_BASE_BYTES = 1 << 30
ACTIVATIONS_PER_INPUT_BYTE = 48
PIPELINE_BATCHES = 4096                # batches per Ray Data pipeline: bounds the driver's work list at any size
CONNECT_TIMEOUT_S = 10
INSTALL_HINT = "pip install 'medsearch[ray]'"


@dataclass(frozen=True)
class EncoderRecipe:
    """What a worker needs to load the same encoder as this process (all plain, picklable data)."""

    model: str
    weights: str | None
    random_init: bool
    preprocess: Preprocess
    views: tuple[str, ...] = ()


# ---------------------------------------------------------------- the session

@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Connect to the Ray cluster at ``address``, or start Ray on this machine (all its cores, a bounded
    object store); disconnect (and stop a Ray started here) on leaving."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        t0 = time.perf_counter()
        common = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                  "configure_logging": True}
        try:
            if address:
                _check_reachable(address)
                ray.init(address=address, **common)
            else:  # its own start-up warnings (token authentication set up for it) are not the user's business
                ray.init(address="local", num_cpus=available_cores(), object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                         **{**common, "logging_level": logging.ERROR})
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at '{address}'" if address else "a local Ray instance"
            raise MedsearchError(f"cannot start or reach {where} ({_first_line(exc)}): start the cluster with "
                                 "`ray start --head`, or check --ray-address") from None
        res = ray.cluster_resources()
        log(f"ray: {'connected to ' + address if address else 'started on this machine'} in "
            f"{time.perf_counter() - t0:.1f} s: {len(ray.nodes())} node(s), {int(res.get('CPU', 0))} CPUs, "
            f"{int(res.get('GPU', 0))} GPUs")
    _quiet_ray_data(ray)
    try:
        # Ray prints cluster events ("(raylet) The node ... has been marked dead") from its own threads to
        # stdout, where they would corrupt `index --json`: while Ray runs, stdout is stderr.
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        if started:
            ray.shutdown()


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable address for minutes: a host:port that refuses a TCP connection is refused
    at once (other forms, 'auto' or ray://, are left to Ray)."""
    host, sep, port = address.rpartition(":")
    if not sep or "/" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {address}: {exc.strerror or exc}") from None


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MedsearchError(f"--engine ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def _quiet_ray_data(ray) -> None:
    """Ray Data's own progress bars and start-up lines would interleave with ours: the driver shows one bar."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    logging.getLogger("ray").setLevel(logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # "progress bars disabled": we did that


# ---------------------------------------------------------------- the workers

class EmbedActor:
    """One Ray actor: loads the encoder once, then decodes (unless already decoded) and encodes one aligned
    batch per call, returning plain arrays."""

    def __init__(self, recipe: EncoderRecipe, source: RowSource, on_missing: str, device: str, threads: int):
        import torch

        from .encoders import load_encoder

        if threads:
            torch.set_num_threads(threads)
        self.encoder = load_encoder(recipe.model, weights=recipe.weights, random_init=recipe.random_init,
                                    device=device, preprocess=recipe.preprocess, views=recipe.views)
        self.source, self.on_missing = source, on_missing

    def __call__(self, item: dict) -> dict:
        rows = np.asarray(item["rows"], dtype=np.int64)
        decoded = item.get("decoded") or decode_item(item, self.source, self.encoder.prepare,
                                                     self.encoder.preprocess.resize)["decoded"]
        out = encode_batch(rows, decoded, self.encoder, self.on_missing)
        return {"rows": rows, "embedding": out.embedding, "state": out.state, "reason": list(out.reason),
                "sha256": list(out.sha256 or [""] * len(rows)), "weights_sha256": self.encoder.weights_sha256 or "",
                "weights_source": self.encoder.weights_source}


def decode_item(item: dict, source: RowSource, prepare: Callable, draft_size: int | None) -> dict:
    """Decode the rows of one input item (a Ray task of its own when the encoder runs on a GPU)."""
    decoded = []
    for src, missing in zip(item["sources"], item["missing"]):
        if missing:
            decoded.append((None, missing, ""))
        else:
            decoded.append(decode_row(lambda s=src: source.open(s, draft_size=draft_size), prepare))
    return {**item, "decoded": decoded}


# ---------------------------------------------------------------- the driver

def ray_embed_rows(source: RowSource, row_info: Callable[[int], tuple[str, str]], rows: np.ndarray, encoder,
                   recipe: EncoderRecipe, *, batch_size: int, on_missing: str, gpus_per_worker: float,
                   progress: bool, desc: str, decode_tasks: bool | None = None) -> Iterator[Batch]:
    """Yield one Batch per aligned batch of ``rows``, embedded by Ray actors; ``row_info(row)`` gives the row's
    stored source and why it is missing ('' when it is not). ``decode_tasks``: decode in CPU tasks ahead of
    the actors (default: when the actors have GPUs)."""
    ray = import_ray()
    batches = aligned_batches(rows, batch_size)
    if not batches:
        return
    seen = np.zeros(int(rows.max()) + 1, dtype=bool)
    bar = None
    try:
        for start in range(0, len(batches), PIPELINE_BATCHES):
            items = []
            for b in batches[start:start + PIPELINE_BATCHES]:
                info = [row_info(int(r)) for r in b]
                items.append({"rows": b.tolist(), "sources": [s for s, _ in info], "missing": [m for _, m in info]})
            pipeline = _pipeline(ray, items, source, recipe, on_missing, gpus_per_worker, first=start == 0,
                                 decode_tasks=bool(gpus_per_worker) if decode_tasks is None else decode_tasks)
            if bar is None:  # after the pipeline's own lines, not through them
                bar = tqdm(total=int(rows.size), unit="img", desc=desc, disable=not progress, file=sys.stderr,
                           dynamic_ncols=True, smoothing=0.05)
            yield from _collect(pipeline, encoder, seen, bar)
    finally:
        if bar is not None:
            bar.close()


def _pipeline(ray, items: list[dict], source: RowSource, recipe: EncoderRecipe, on_missing: str, gpus: float,
              first: bool, decode_tasks: bool = False):
    res = ray.cluster_resources()
    data = ray.data.from_items(items, override_num_blocks=len(items))  # one aligned batch per block
    if decode_tasks:
        from functools import partial

        from .encoders import prepare_image

        data = data.map(decode_item, fn_kwargs={"source": source, "prepare": partial(prepare_image, p=recipe.preprocess),
                                                "draft_size": recipe.preprocess.resize}, num_cpus=1)
    if gpus:
        actors, memory = max(1, int(res.get("GPU", 0) // gpus)), 0
        if not res.get("GPU"):
            raise MedsearchError(f"--gpus-per-worker {gpus} but the Ray cluster has no GPU: drop --gpus-per-worker "
                                 "to embed on CPUs, or add GPU nodes")
        kwargs = {"device": "cuda", "threads": 0}
        resources = {"num_gpus": gpus, "num_cpus": 1}
    else:
        memory = actor_memory(max(len(i["rows"]) for i in items), recipe.preprocess.crop)
        cores = max(1, int(res.get("CPU", 1)) // (2 if decode_tasks else 1))  # half of them decoding, if so
        actors = max(1, min(cores, int(res.get("memory", 0) // memory)))
        kwargs = {"device": "cpu", "threads": 1}
        resources = {"num_cpus": 1, "memory": memory, "runtime_env": {"env_vars": CPU_ACTOR_MALLOC}}
        if first and actors < cores:
            log(f"ray: the cluster's memory allows {actors} CPU actors of {memory / 2**30:.1f} GiB for its {cores} "
                "cores: a smaller --batch-size fits more")
    if first:
        log(f"ray: {actors} encoder actor(s) ({'GPU' if gpus else f'CPU, {memory / 2**30:.1f} GiB each'})")
    return data.map(EmbedActor, fn_constructor_kwargs={"recipe": recipe, "source": source, "on_missing": on_missing,
                                                       **kwargs},
                    compute=ray.data.ActorPoolStrategy(size=actors), **resources)


def actor_memory(batch_size: int, crop: int) -> int:
    """Bytes a CPU actor is expected to hold for batches of ``batch_size`` images of ``crop`` pixels."""
    return int(ACTOR_BASE_BYTES + ACTIVATIONS_PER_INPUT_BYTE * batch_size * 3 * crop * crop * 4)


def _collect(pipeline, encoder, seen: np.ndarray, bar) -> Iterator[Batch]:
    """The pipeline's batches as they finish, each once (``seen``: rows already delivered in this run)."""
    twice = 0
    for out in _rows(pipeline):
        _check_same_weights(out, encoder)
        rows = np.asarray(out["rows"], dtype=np.int64)
        if seen[rows].all():
            twice += 1
            continue
        seen[rows] = True
        sha = [str(s) for s in out["sha256"]]
        yield Batch(rows, np.asarray(out["embedding"], dtype=np.float32).reshape(len(rows), -1),
                    np.asarray(out["state"], dtype=np.int8), [str(r) for r in out["reason"]],
                    sha if any(sha) else None)
        bar.update(len(rows))
    if twice:
        log(f"ray: {twice} batch(es) delivered twice after a retry were kept once")


def _rows(pipeline) -> Iterator[dict]:
    """The pipeline's output items; a failure in a worker becomes one line."""
    try:
        yield from pipeline.iter_rows()
    except MedsearchError:
        raise
    except Exception as exc:  # Ray wraps a worker's exception (RayTaskError, ActorDiedError, ...)
        cause = exc
        while getattr(cause, "cause", None) is not None and cause.cause is not cause:
            cause = cause.cause
        if isinstance(cause, MedsearchError):
            raise MedsearchError(f"a Ray worker failed: {cause}") from None
        raise MedsearchError(f"the Ray engine failed ({type(exc).__name__}: {_first_line(exc)}); rows finished so far "
                             "are kept: run the same command again to resume") from None


def _check_same_weights(out: dict, encoder) -> None:
    theirs, ours = str(out["weights_sha256"]), encoder.weights_sha256 or ""
    if theirs != ours or (not ours and str(out["weights_source"]) != encoder.weights_source):
        raise MedsearchError(f"a Ray worker loaded other weights ({out['weights_source']}, sha256 {theirs[:12] or '-'}) "
                             f"than this process ({encoder.weights_source}, sha256 {ours[:12] or '-'}): give every "
                             "node the same checkpoint (a shared path in --weights)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
