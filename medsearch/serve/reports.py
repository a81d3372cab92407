"""The `eval` reports of an index (INDEX/reports/<name>/results.json and roc-<model>.png), found by listing
that folder: a report or model named by a client is looked up among those found, never joined to a path."""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..storage.store import model_key
from .errors import HttpError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def list_reports(index_dir: Path) -> list[str]:
    """Report folder names, newest first (by the time their results.json was written)."""
    folder = Path(index_dir) / "reports"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        results = p / "results.json"
        if NAME.match(p.name) and p.is_dir() and results.is_file():
            found.append((results.stat().st_mtime_ns, p.name))
    return [name for _, name in sorted(found, reverse=True)]


def _folder(index_dir: Path, name: str) -> Path:
    if name not in list_reports(index_dir):
        raise HttpError(404, f"no eval report named '{name[:120]}' in this index: see /api/indexes/{{index}}/reports")
    return Path(index_dir) / "reports" / name


def load_report(index_dir: Path, name: str) -> dict:
    try:
        return json.loads((_folder(index_dir, name) / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HttpError(404, f"eval report '{name}' cannot be read ({type(exc).__name__})") from None


PLOTS = {"roc": "ROC plot", "curves": "label-efficiency plot"}  # file prefix -> what it is


def roc_png(index_dir: Path, name: str, model: str) -> bytes:
    """The ROC plot of ``model`` in report ``name``; 404 when the report has none for it."""
    return plot_png(index_dir, name, model, "roc")


def plot_png(index_dir: Path, name: str, model: str, kind: str) -> bytes:
    """Plot ``kind`` (PLOTS: roc, curves) of ``model`` in report ``name``; 404 when the report has none."""
    results = load_report(index_dir, name)
    if model not in results.get("models", {}):
        raise HttpError(404, f"report '{name}' has no model '{model[:120]}'")
    path = _folder(index_dir, name) / f"{kind}-{model_key(model)}.png"
    if not path.is_file():
        raise HttpError(404, f"report '{name}' has no {PLOTS[kind]} for '{model[:120]}'")
    return path.read_bytes()


def report_view(index_dir: Path, name: str) -> dict:
    """What the eval page shows of a report: its table rows (report.table_rows, with CIs), columns, models
    with a ROC plot and with a label-efficiency plot (`eval --train-fractions`), notes and configuration, and the
    paired deltas across models (report.across_rows; None for one model)."""
    from ..evaluation.report import COLUMNS, across_rows, table_rows

    results = load_report(index_dir, name)
    ks = results.get("config", {}).get("ks") or [10]
    k = 10 if 10 in ks else max(ks)  # the cut-off report.py's table shows
    folder = _folder(index_dir, name)
    return {"name": name, "columns": [c.replace("@10", f"@{k}") for c in COLUMNS], "rows": table_rows(results),
            "roc_models": [m for m in results.get("models", {}) if (folder / f"roc-{model_key(m)}.png").is_file()],
            "curve_models": [m for m in results.get("models", {})
                             if (folder / f"curves-{model_key(m)}.png").is_file()],
            "notes": results.get("notes", []), "config": results.get("config", {}),
            "store": results.get("store", {}), "split": _split_line(results.get("split") or {}),
            "across": across_rows(results)}


def _split_line(split: dict) -> str:
    """How the report's cases were split, with how many were tested: the AUCs' CIs rest on the test cases."""
    rounds = split.get("rounds") or []
    n_test, n_train = sum(r.get("n_test", 0) for r in rounds), sum(r.get("n_train", 0) for r in rounds)
    if not rounds:
        return split.get("description", "")
    counts = (f"{n_train} training and {n_test} test cases" if len(rounds) == 1
              else f"{len(rounds)} rounds, {n_test} test cases in all")
    return f"{split.get('description', split.get('mode', 'split'))}: {counts}"
