"""Render label-efficiency curves (`eval --train-fractions`): the table, curves.csv and the plot per model.

Renderers read the JSON form of the curves (``EvalResult.to_json()['curves']``), as report.py does. The plot
is AUC against the number of training labels on a log axis, one line per method through the seeds' mean,
with the band (min-max over seeds) shaded; it is drawn with matplotlib like the ROC plots.
"""
from __future__ import annotations

import csv
import io

CURVE_FIELDS = ("model", "fraction", "seed", "n_train", "n_units", "floor_rows", "folds", "method", "auc",
                "not_computable")
FIGSIZE = (6.5, 4.8)  # inches; the PNG is FIGSIZE x DPI pixels
DPI = 100


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


def _cell(band: dict) -> str:
    if band["auc"] is None:
        return "not computable"
    text = f"{band['auc']:.3f} [{band['lo']:.3f}, {band['hi']:.3f}]"
    return text + (f" ({band['n_seeds']} seeds)" if band["not_computable"] else "")


def curve_table(curves: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per fraction: the fraction, the mean training labels, then per method the mean
    AUC [min, max] over seeds ('(n seeds)' when some seeds were not computable)."""
    methods = list(dict.fromkeys(b["method"] for b in curves["bands"]))
    labels = {b["method"]: b["label"] for b in curves["bands"]}
    header = ["fraction", "labels", *(labels[m] for m in methods)]
    rows = []
    for fraction in curves["fractions"]:
        at = {b["method"]: b for b in curves["bands"] if b["fraction"] == fraction}
        n_train = [p["n_train"] for p in curves["points"] if p["fraction"] == fraction]
        shown = f"{min(n_train)}" if min(n_train) == max(n_train) else f"{min(n_train)}-{max(n_train)}"
        rows.append([_percent(fraction), shown, *(_cell(at[m]) for m in methods)])
    return header, rows


def not_computable_lines(curves: dict) -> list[str]:
    """One line per point that could not be computed, with its reason."""
    return [f"{_percent(p['fraction'])} seed {p['seed']} {method}: {why}"
            for p in curves["points"] for method, why in p["not_computable"].items()]


def curve_text_lines(key: str, curves: dict, aligned) -> list[str]:
    """The terminal block of one model's curves; ``aligned(header, rows)`` lays the table out."""
    header, rows = curve_table(curves)
    out = [f"{key} label-efficiency curves: test AUC, mean [min, max] over {curves['seeds']} seed(s), on the same "
           f"{curves['test_rows']} test rows", aligned(header, rows), f"  subsets: {curves['subsets']}"]
    out += [f"  not computable: {line}" for line in not_computable_lines(curves)]
    return out + [""]


def curve_markdown_lines(key: str, curves: dict) -> list[str]:
    header, rows = curve_table(curves)
    lines = ["", f"## Label-efficiency curves: {key}", "",
             f"Test AUC, mean [min, max] over {curves['seeds']} seed(s), on the same {curves['test_rows']} test "
             f"rows. Subsets: {curves['subsets']}.", "",
             "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    lines += [f"- not computable: {line}" for line in not_computable_lines(curves)]
    return lines


def curves_csv_text(all_curves: dict) -> str:
    """curves.csv: one row per model x fraction x seed x method (the AUC empty where not computable)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_FIELDS)
    writer.writeheader()
    for key, curves in all_curves.items():
        methods = list(dict.fromkeys(b["method"] for b in curves["bands"]))
        for p in curves["points"]:
            for m in methods:
                auc = p["auc"].get(m)
                writer.writerow({"model": key, "fraction": p["fraction"], "seed": p["seed"], "n_train": p["n_train"],
                                 "n_units": p["n_units"], "floor_rows": p["floor_rows"],
                                 "folds": "" if p["folds"] is None else p["folds"], "method": m,
                                 "auc": "" if auc is None else auc,
                                 "not_computable": p["not_computable"].get(m, "")})
    return buf.getvalue()


def plot_curves(curves: dict, title: str):
    """A matplotlib figure: test AUC against training labels (log x), one line per method through the mean
    over seeds, its min-max band shaded; fractions where a method is not computable are left out."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot(1, 1, 1)
    for method in dict.fromkeys(b["method"] for b in curves["bands"]):
        bands = [b for b in curves["bands"] if b["method"] == method and b["auc"] is not None]
        if not bands:
            continue
        x = [b["n_train"] for b in bands]
        line, = ax.plot(x, [b["auc"] for b in bands], marker="o", markersize=4, label=bands[0]["label"])
        ax.fill_between(x, [b["lo"] for b in bands], [b["hi"] for b in bands], color=line.get_color(), alpha=0.2,
                        linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("training labels (log scale)")
    ax.set_ylabel("test AUC")
    # the model on a line of its own: a fused model's name alone fills the width
    ax.set_title(f"{title}\nAUC vs training labels (mean, min-max over {curves['seeds']} seeds)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
