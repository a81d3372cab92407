"""Render `medsearch eval` results: the terminal table, and the report folder (JSON, CSV, Markdown, ROC plots;
with --train-fractions also the label-efficiency curves' tables, curves.csv and plots, from curve_report).

Rows are model x method; head and k-NN rows fill the classification columns, the retrieval row fills
P@k / mAP@k; '-' marks a figure that does not apply. Every file is written atomically.
Renderers read the JSON form (``EvalResult.to_json()``, the same dict as a report's results.json, so a saved
report can be rendered again); the public ones also take the EvalResult itself.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ..storage.atomic import atomic_write_json, atomic_write_text, atomic_write_with
from ..display import printable
from ..storage.store import model_key
from .curve_report import DPI, curve_markdown_lines, curve_text_lines, curves_csv_text, plot_curves

COLUMNS = ("model", "method", "AUC [95% CI]", "accuracy", "precision", "recall", "F1", "P@10", "mAP@10", "fit s")
CSV_FIELDS = ("model", "method", "auc", "auc_lo", "auc_hi", "accuracy", "precision", "recall", "f1",
              "precision@k", "map@k", "acc@k", "k", "fit_seconds", "params", "delta_vs_best", "delta_p")


def _as_json(results) -> dict:
    """The JSON form of an EvalResult (a dict is taken as it is)."""
    return results.to_json() if hasattr(results, "to_json") else results


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _top_k(results: dict) -> int:
    ks = results["config"]["ks"]
    return 10 if 10 in ks else max(ks)


def table_rows(results) -> list[list[str]]:
    """One row of display strings per model x method, in COLUMNS order."""
    results = _as_json(results)
    k = _top_k(results)
    rows = []
    for key, model in results["models"].items():
        for m in model["methods"].values():
            if m["kind"] == "retrieval":
                r = m["metrics"]
                rows.append([key, m["label"], "-", "-", "-", "-", "-", _num(r.get(f"precision@{k}")),
                             _num(r.get(f"map@{k}")), _num(m["fit_seconds"], 1)])
                continue
            lo, hi = m["auc_ci"]
            ci = f"{_num(m['auc'])} [{_num(lo)}, {_num(hi)}]"
            rows.append([key, m["label"], ci, _num(m["accuracy"]), _num(m["precision"]), _num(m["recall"]),
                         _num(m["f1"]), "-", "-", _num(m["fit_seconds"], 1)])
    return rows


def _columns(k: int) -> list[str]:
    return [c.replace("@10", f"@{k}") for c in COLUMNS]


def _aligned(header, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def _params_text(params) -> str:
    if isinstance(params, list):  # one setting per cross-validation round
        return "; ".join(_params_text(p) for p in params)
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items()) or "-"


def format_eval_results(results) -> str:
    """The terminal report: main table, retrieval detail, deltas, parameters, split, reference."""
    results = _as_json(results)
    k = _top_k(results)
    out = [f"medsearch eval: {printable(results['index_dir'])} ({results['store']['task']}, "
           f"{len(results['store']['label_names'])} labels)", "",
           _aligned(_columns(k), table_rows(results)), ""]
    for key, model in results["models"].items():
        out += _model_lines(key, model, results["config"]["ks"])
    out += _across_lines(results)
    for key, curves in (results.get("curves") or {}).items():
        out += curve_text_lines(key, curves, _aligned)
    split = results["split"]
    both = [r["groups_in_both"] for r in split["rounds"] if r["groups_in_both"] is not None]
    out.append(f"split: {split['description']}; {split['n_train']} train / {split['n_test']} test rows"
               + (f"; patients on both sides: {max(both)}" if both else ""))
    out += [f"note: {note}" for note in results["notes"]]
    out += [f"warning: {warning}" for warning in results["warnings"]]
    out += _reference_lines(results.get("reference"))
    out.append(f"report: {results.get('report_dir', '-')}")
    return "\n".join(out) + "\n"


def _model_lines(key: str, model: dict, ks) -> list[str]:
    """One model's retrieval detail, deltas against the best method, chosen settings and saved head."""
    out = []
    retrieval = model["methods"].get("retrieval")
    if retrieval:
        r = retrieval["metrics"]
        out.append(f"{key} retrieval (test images query the training images): " + "; ".join(
            f"@{q}: P {_num(r.get(f'precision@{q}'))}, mAP {_num(r.get(f'map@{q}'))}, acc {_num(r.get(f'acc@{q}'))}"
            for q in sorted(ks)))
    if model["best"]:
        best_label = model["methods"][model["best"]]["label"]
        out.append(f"{key} paired bootstrap AUC deltas against the best method ({best_label}):")
        for m, d in model["deltas"].items():
            out.append(f"  {model['methods'][m]['label']:<11} {_signed(d['delta'])} "
                       f"[{_signed(d['lo'])}, {_signed(d['hi'])}]  p={_num(d['p_value'])}")
    out.append(f"{key} chosen settings:")
    for m in model["methods"].values():
        if m["kind"] != "retrieval":
            cv = m["cv_auc"]
            cv_text = _num(cv) if not isinstance(cv, list) else ", ".join(_num(c) for c in cv)
            extra = f"; {m['not_converged']} fit(s) stopped at the iteration limit" if m.get("not_converged") else ""
            out.append(f"  {m['label']:<11} {_params_text(m['params'])} (CV AUC {cv_text}{extra})")
    for m in model["methods"].values():
        out += _attention_lines(key, m)
    if model.get("saved_head"):
        out.append(f"{key} saved head: {printable(model['saved_head'])}")
    out.append("")
    return out


def across_rows(results: dict) -> tuple[str, list[list[str]]] | None:
    """(title, rows of [model, method, delta, CI, p]) of the paired deltas across models (across_models), largest
    delta first; None for a run of one model."""
    across, models = results.get("across_models"), results["models"]
    if not across:
        return None
    key, method = across["vs"].rsplit(" ", 1)
    title = (f"Paired bootstrap AUC deltas across models, against the {across['reference']} ({key} "
             f"{models[key]['methods'][method]['label']}, AUC {_num(across['auc'])})")
    rows = []
    for name, d in sorted(across["deltas"].items(), key=lambda kv: -kv[1]["delta"]):
        model, m = name.rsplit(" ", 1)
        rows.append([model, models[model]["methods"][m]["label"], _signed(d["delta"]),
                     f"[{_signed(d['lo'])}, {_signed(d['hi'])}]", _num(d["p_value"])])
    return title, rows


def _across_lines(results: dict) -> list[str]:
    """The terminal form of across_rows."""
    table = across_rows(results)
    if table is None:
        return []
    title, rows = table
    return [title[0].lower() + title[1:] + ":", _aligned(["model", "method", "delta", "95% CI", "p"], rows), ""]


def _attention_lines(key: str, method: dict) -> list[str]:
    """The mean attention a head that weighs encoders (dvme) gave each of them: over all test rows, per class."""
    attention = method.get("attention")
    if not attention:
        return []
    weights = lambda values: ", ".join(f"{e} {w:.2f}" for e, w in zip(attention["encoders"], values))  # noqa: E731
    out = [f"{key} {method['label']} mean attention per encoder over {attention['n']} test rows: "
           f"{weights(attention['mean'])}"]
    out += [f"  {printable(name)}: {weights(values)}" for name, values in attention["per_class"].items()]
    return out


def _reference_lines(ref: dict | None) -> list[str]:
    if not ref:
        return []
    out = ["", f"reference figures for {ref['name']}" + (f" ({ref['anchor_note']})" if ref.get("anchor_note") else "")
           + ":"]
    for row in ref["rows"]:
        figure = "not recorded" if row["auc"] is None else f"AUC {row['auc']:.4f}"
        what = " ".join(x for x in (row["kind"], row.get("model") or "", row.get("head") or "") if x)
        out.append(f"  {what:<40} {figure:<14} {row['table']}, {row['source'].split(',')[0]}")
    return out


def _signed(value) -> str:
    return "-" if value is None else f"{value:+.3f}"


# ---- files -------------------------------------------------------------------------------------


def csv_text(results) -> str:
    """results.csv: one row per model x method (P@k, mAP@k, acc@k at the table's k for retrieval)."""
    results = _as_json(results)
    k = _top_k(results)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for key, model in results["models"].items():
        for name, m in model["methods"].items():
            row = dict.fromkeys(CSV_FIELDS, "")
            row.update(model=key, method=m["label"], fit_seconds=m["fit_seconds"])
            if m["kind"] == "retrieval":
                r = m["metrics"]
                row.update({"precision@k": r.get(f"precision@{k}"), "map@k": r.get(f"map@{k}"),
                            "acc@k": r.get(f"acc@{k}"), "k": k})
            else:
                delta = model["deltas"].get(name, {})
                row.update(auc=m["auc"], auc_lo=m["auc_ci"][0], auc_hi=m["auc_ci"][1], accuracy=m["accuracy"],
                           precision=m["precision"], recall=m["recall"], f1=m["f1"], params=_params_text(m["params"]),
                           delta_vs_best=delta.get("delta", ""), delta_p=delta.get("p_value", ""))
            writer.writerow({k2: ("" if v is None else v) for k2, v in row.items()})
    return buf.getvalue()


def markdown_text(results) -> str:
    """results.md: the split, the main table, the notes and warnings, and the reference figures."""
    results = _as_json(results)
    k = _top_k(results)
    header = _columns(k)
    lines = [f"# medsearch eval: {printable(results['index_dir'])}", "",
             f"Split: {results['split']['description']}; {results['split']['n_train']} train / "
             f"{results['split']['n_test']} test rows.", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(results)]
    lines += [""] + [f"- {note}" for note in results["notes"]] + [f"- **warning**: {w}" for w in results["warnings"]]
    for key, model in results["models"].items():
        for m in model["methods"].values():
            lines += [f"- {line.strip()}" for line in _attention_lines(key, m)]
    across = across_rows(results)
    if across:
        title, rows = across
        lines += ["", f"{title}:", "", "| model | method | delta | 95% CI | p |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    ref = results.get("reference")
    if ref:
        lines += ["", f"Reference figures ({ref['name']}):", "", "| kind | model | head | AUC | source |", "|---|---|---|---|---|"]
        for row in ref["rows"]:
            figure = "not recorded" if row["auc"] is None else f"{row['auc']:.4f}"
            lines.append(f"| {row['kind']} | {row.get('model') or '-'} | {row.get('head') or '-'} | {figure} | "
                         f"{row['table']}, {row['source'].split(',')[0]} |")
    for key, curves in (results.get("curves") or {}).items():
        lines += curve_markdown_lines(key, curves)
    return "\n".join(lines) + "\n"


def plot_roc(curve: dict, title: str):
    """A matplotlib figure: one ROC curve per method (binary; macro over labels for multilabel);
    multiclass adds the best method's per-class curves beside the methods' micro-average curves."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    y, task, names = np.asarray(curve["y"]), curve["task"], curve["label_names"]
    panels = 2 if task == "multiclass" and curve.get("best") else 1
    fig = Figure(figsize=(6 * panels, 5.5))
    axes = [fig.add_subplot(1, panels, i + 1) for i in range(panels)]
    for label, scores in curve["scores"].items():
        fpr, tpr = _roc_points(y, np.asarray(scores), task, roc_curve)
        axes[0].plot(fpr, tpr, label=label)
    kind = {"binary": "", "multiclass": " (micro-average over classes)", "multilabel": " (macro-average over labels)"}[task]
    axes[0].set_title(f"{title}{kind}", fontsize=10)
    if panels == 2:
        best = np.asarray(curve["scores"][curve["best"]])
        for c, name in enumerate(names):
            if 0 < (y == c).sum() < y.size:
                fpr, tpr, _ = roc_curve(y == c, best[:, c])
                axes[1].plot(fpr, tpr, label=name)
        axes[1].set_title(f"{title}: {curve['best']} per class", fontsize=10)
    for ax in axes:
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _roc_points(y, scores, task, roc_curve):
    if task == "binary":
        fpr, tpr, _ = roc_curve(y, scores)
        return fpr, tpr
    truth = (y[:, None] == np.arange(scores.shape[1])) if task == "multiclass" else y.astype(bool)
    if task == "multiclass":  # micro-average: every (row, class) pair is one decision
        fpr, tpr, _ = roc_curve(truth.ravel(), scores.ravel())
        return fpr, tpr
    grid = np.linspace(0, 1, 201)  # macro-average: mean of per-label TPR interpolated on a common FPR grid
    curves = []
    for j in range(truth.shape[1]):
        if 0 < truth[:, j].sum() < truth.shape[0]:
            fpr, tpr, _ = roc_curve(truth[:, j], scores[:, j])
            curves.append(np.interp(grid, fpr, tpr))
    return grid, (np.mean(curves, axis=0) if curves else grid)


def write_report(results, curves: dict, folder) -> dict[str, str]:
    """Write results.json, results.csv, results.md and roc-<model>.png into ``folder`` (with curves in the
    results, also curves.csv and curves-<model>.png); returns their paths.

    ``curves``: {model: {'y', 'scores': {method: pooled test scores}, 'task', 'label_names', 'best'}}."""
    results = _as_json(results)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "results.json", "csv": folder / "results.csv", "markdown": folder / "results.md"}
    atomic_write_json(paths["json"], results)
    atomic_write_text(paths["csv"], csv_text(results))
    atomic_write_text(paths["markdown"], markdown_text(results))
    for key, curve in curves.items():
        if not curve["scores"]:
            continue
        label = {m: results["models"][key]["methods"][m]["label"] for m in curve["scores"]}
        fig = plot_roc({**curve, "scores": {label[m]: s for m, s in curve["scores"].items()},
                        "best": label.get(curve.get("best"))}, key)
        path = folder / f"roc-{model_key(key)}.png"
        atomic_write_with(path, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100))
        paths[f"roc:{key}"] = path
    _write_curves(results.get("curves") or {}, folder, paths)
    return {k: str(v) for k, v in paths.items()}


def _write_curves(all_curves: dict, folder: Path, paths: dict) -> None:
    """curves.csv and one curves-<model>.png per model with label-efficiency curves."""
    if not all_curves:
        return
    paths["curves_csv"] = folder / "curves.csv"
    atomic_write_text(paths["curves_csv"], curves_csv_text(all_curves))
    for key, curves in all_curves.items():
        fig = plot_curves(curves, key)
        path = folder / f"curves-{model_key(key)}.png"
        atomic_write_with(path, lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=DPI))
        paths[f"curves:{key}"] = path
