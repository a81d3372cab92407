"""Manifest columns: finding a column by its usual names, and the rule that reads the labels (``csv_labels``),
stated in one line (the dataset's ``reading``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..display import printable
from ..errors import MedsearchError

LABEL_COLUMNS = ("label", "labels", "class", "diagnosis", "dx", "target", "finding")


def pick_column(header: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str | None:
    """The column ``wanted`` (refused if absent), else the first of ``candidates`` in the header (any case)."""
    if wanted is not None:
        if wanted not in header:
            raise MedsearchError(f"manifest '{path}' has no column '{wanted}' ({what}); its columns are: {', '.join(header)}")
        return wanted
    lower = {h.lower(): h for h in header}
    return next((lower[c] for c in candidates if c in lower), None)


BINARY_VALUES = ("0", "1", "0.0", "1.0")  # how a 0/1 label column may spell its values


def _is_binary_column(rows: list[dict[str, str]], col: str) -> bool:
    return all(r.get(col, "") in BINARY_VALUES for r in rows)


def csv_labels(header, rows, path, img_col, other_cols, label_col, label_cols):
    """(labels, label names, task, reading): how the manifest's labels are read, stated in one line.

    Two readings exist: one label column (numbers or names: binary/multiclass), or one 0/1 column per label
    (exactly one set per row: multiclass with the columns as classes; else multilabel). Without --label-col or
    --label-cols, a manifest that allows both (a column named like a label, and two or more other-than-id 0/1
    columns) is refused, unless the two readings are provably the same (the 0/1 columns are the one-hot code of
    the label column on every row, as in ISIC 2018's labels.csv): a covariate such as ``male`` never becomes a
    label by guess."""
    if label_col and label_cols:
        raise MedsearchError("give either --label-col (one label column) or --label-cols (one 0/1 column per label), not both")
    if label_cols:
        missing = [c for c in label_cols if c not in header]
        if missing:
            raise MedsearchError(f"manifest '{path.name}' has no column(s) {', '.join(missing)}; its columns are: {', '.join(header)}")
        labels, names, task = _hot_labels(rows, list(dict.fromkeys(label_cols)), path, img_col)
        return labels, names, task, _reading_of_columns(names, task, header, img_col, other_cols, "--label-cols")
    if label_col:
        col = pick_column(header, label_col, (), "label column", path)
        labels, names, task = _column_labels(rows, col, path)
        return labels, names, task, _reading_of_column(col, names, task, header, img_col, other_cols, "--label-col")
    candidates = [h for h in header if h not in (img_col, *other_cols)]
    hot_cols = [h for h in candidates if _is_binary_column(rows, h)]
    named = pick_column([h for h in candidates], None, LABEL_COLUMNS, "label column", path)
    if named is not None and len(hot_cols) >= 2:
        same = _one_hot_of(rows, named, hot_cols) if named not in hot_cols else None
        if same is None:
            raise MedsearchError(
                f"manifest '{path.name}' can be read two ways: one label column '{named}' (the other 0/1 columns "
                f"{', '.join(c for c in hot_cols if c != named)} ignored), or one 0/1 column per label "
                f"({', '.join(hot_cols)}): say which with --label-col {named} or --label-cols {','.join(hot_cols)}")
        labels, names, task = _hot_labels(rows, hot_cols, path, img_col)
        reading = _reading_of_columns(names, task, [h for h in header if h != named], img_col, other_cols, "auto")
        return labels, names, task, reading + f"; column '{printable(named)}' agrees with them on every row"
    if len(hot_cols) >= 2:
        labels, names, task = _hot_labels(rows, hot_cols, path, img_col)
        return labels, names, task, _reading_of_columns(names, task, header, img_col, other_cols, "auto")
    if named is None:
        raise MedsearchError(f"manifest '{path.name}' has no label column (looked for {', '.join(LABEL_COLUMNS)} "
                             "or several 0/1 columns): name it with --label-col or --label-cols")
    labels, names, task = _column_labels(rows, named, path)
    return labels, names, task, _reading_of_column(named, names, task, header, img_col, other_cols, "auto")


def _hot_labels(rows, cols, path, img_col):
    bad = next((r for r in rows if not all(_is_binary_column([r], c) for c in cols)), None)
    if bad is not None:
        raise MedsearchError(f"label columns {', '.join(cols)} of '{path.name}' must hold 0 or 1 "
                             f"(row for '{printable(bad.get(img_col) or '')}' does not)")
    hot = np.array([[int(float(r[c])) for c in cols] for r in rows], dtype=np.int64).reshape(len(rows), len(cols))
    if len(cols) >= 2 and (hot.sum(1) == 1).all():
        return hot.argmax(1), list(cols), ("binary" if len(cols) == 2 else "multiclass")
    return hot, list(cols), "multilabel"


def _column_labels(rows, col, path):
    values = [r[col] for r in rows]
    empty = sum(1 for v in values if v == "")
    if empty:
        raise MedsearchError(f"{empty} row(s) of '{path.name}' have an empty '{col}': fill in every label or drop those rows")
    if all(_is_int(v) for v in values):
        ints = sorted({int(float(v)) for v in values})
        names = [str(v) for v in ints]
        codes = {v: i for i, v in enumerate(ints)}
        labels = np.array([codes[int(float(v))] for v in values], dtype=np.int64)
    else:
        names = sorted(set(values))
        codes = {v: i for i, v in enumerate(names)}
        labels = np.array([codes[v] for v in values], dtype=np.int64)
    if len(names) < 2:
        raise MedsearchError(f"column '{col}' of '{path.name}' holds a single class ('{printable(names[0])}'): "
                             "a classifier needs at least two; check --label-col")
    return labels, names, ("binary" if len(names) == 2 else "multiclass")


def _one_hot_of(rows, col, hot_cols) -> bool | None:
    """True when ``hot_cols`` one-hot encode ``col`` (each value always with the same single column, each column
    with a single value); None otherwise."""
    value_to_col, col_to_value = {}, {}
    for r in rows:
        on = [c for c in hot_cols if float(r[c]) == 1.0]
        if len(on) != 1:
            return None
        v, c = r[col], on[0]
        if value_to_col.setdefault(v, c) != c or col_to_value.setdefault(c, v) != v:
            return None
    return True


def _ignored(header, used, img_col, other_cols) -> str:
    rest = [h for h in header if h and h not in used and h != img_col and h not in other_cols]
    return f"; columns ignored: {', '.join(rest)}" if rest else ""


def _reading_of_column(col, names, task, header, img_col, other_cols, how) -> str:
    shown = ", ".join(printable(n) for n in names[:8]) + (", ..." if len(names) > 8 else "")
    return (f"labels from column '{printable(col)}' ({task}, {len(names)} classes: {shown}; {how})"
            + _ignored(header, {col}, img_col, other_cols))


def _reading_of_columns(cols, task, header, img_col, other_cols, how) -> str:
    kind = "multi-hot" if task == "multilabel" else "one-hot"
    return (f"labels from {len(cols)} 0/1 columns {', '.join(printable(c) for c in cols)} ({kind}, {task}; {how})"
            + _ignored(header, set(cols), img_col, other_cols))


def _is_int(v: str) -> bool:
    try:
        return float(v) == int(float(v))
    except (ValueError, OverflowError):
        return False

