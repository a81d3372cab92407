"""Every eval method on the shared real datasets with the offline encoders, beside the published anchors.

Datasets (../shared/data) and how each is split:
  skin-isic2018  5-fold cross-validation (1,510 images, no official split)    anchor: HAM10000 (paper Table 2)
  retina-odir    80/20 holdout grouped by patient ID (multilabel N..O)          anchor: ODIR (paper Table 2)
  breast-busi    stratified 80/20 holdout (no patient ids)                      anchor: none
  retinamnist    official MedMNIST test split                                   anchor: MedMNIST v2 ResNet-50 0.726
  breastmnist    official MedMNIST test split                                   anchor: MedMNIST v2 ResNet-18 0.901
Encoders: efficientnet-lite0, efficientnet-lite2 (weights from their pip packages) and mobilenet-v2
(../shared/weights/mobilenet_v2_imagenet.pth), and their fusion (medsearch.evaluation.fusion: 'a+b+c'). Stores go to
indexes/<dataset> and are reused: indexing again embeds only what is missing. ODIR is slow to embed on 2
cores: --limit N keeps the first patients up to N images (both eyes of a patient stay together) and the
output says so.

    .venv/bin/python benchmarks/bench_eval_accuracy.py [--datasets skin-isic2018,breast-busi]
        [--encoders efficientnet-lite0] [--limit 2000] [--heads lr,linear-svc,svc-linear,svc-rbf]
        [--C 0.003,0.01,0.03,0.1] [--no-fusion] [--fusion-heads lr,dvme]

--fusion-heads evaluates the fused model in a second run with its own heads; both runs use the same seeded split,
so their AUCs are on the same test rows. For paired deltas against the best single encoder, run one `medsearch
eval` with the single models and the fusion together (dvme then runs on the fusion only; RESULTS.md, issue 17).
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsearch.evaluation.evaluate import evaluate  # noqa: E402
from medsearch.evaluation.eval_options import DEFAULT_HEADS  # noqa: E402
from medsearch.ingest.indexing import index_dataset  # noqa: E402

DATA = REPO.parent / "shared" / "data"
WEIGHTS = {"mobilenet-v2": str(REPO.parent / "shared" / "weights" / "mobilenet_v2_imagenet.pth")}
ODIR_LABELS = ["N", "D", "G", "C", "A", "H", "M", "O"]

DATASETS = {
    "skin-isic2018": dict(source="skin-isic2018", evaluate=dict(cv=5), goal=0.93,
                          anchors="paper HAM10000: ResNet50 0.933, CLIP+LR 0.9586"),
    "retina-odir": dict(source="retina-odir", index=dict(label_cols=ODIR_LABELS, group_col="ID", image_col="filename"),
                        evaluate=dict(split="grouped"), goal=0.86, anchors="paper ODIR: ResNet50 0.8544, CLIP 0.8577"),
    "breast-busi": dict(source="breast-busi", evaluate=dict(split="auto"), goal=None, anchors="none published here"),
    "retinamnist": dict(source="medmnist/retinamnist.npz", evaluate=dict(split="official"), goal=0.75,
                        anchors="MedMNIST v2 RetinaMNIST ResNet-50 (28) 0.726"),
    "breastmnist": dict(source="medmnist/breastmnist.npz", evaluate=dict(split="official"), goal=0.90,
                        anchors="MedMNIST v2 BreastMNIST ResNet-18 (28) 0.901"),
}
ENCODERS = ("efficientnet-lite0", "efficientnet-lite2", "mobilenet-v2")


def odir_subset(limit: int) -> Path:
    """A manifest with the first patients of ODIR up to ``limit`` images, pointing at the shared images."""
    folder = REPO / "indexes" / f"retina-odir-first{limit}-manifest"
    folder.mkdir(parents=True, exist_ok=True)
    with open(DATA / "retina-odir" / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    kept, patients = [], set()
    for row in rows:
        if row["ID"] not in patients and len(kept) >= limit:
            break
        patients.add(row["ID"])
        kept.append(row)
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return folder


def build_store(name: str, encoders, limit: int | None) -> Path:
    spec = DATASETS[name]
    source = DATA / spec["source"]
    kwargs = dict(spec.get("index", {}))
    out = REPO / "indexes" / name
    if name == "retina-odir" and limit:
        source = odir_subset(limit)
        kwargs["images_dir"] = str(DATA / "retina-odir" / "images")
        out = REPO / "indexes" / f"retina-odir-first{limit}"
    for encoder in encoders:
        t0 = time.perf_counter()
        weights = (WEIGHTS[encoder],) if encoder in WEIGHTS else ()
        index_dataset(str(source), out=str(out), models=(encoder,), weights=weights, progress=False, **kwargs)
        print(f"  {name}: {encoder} stored ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def run(name: str, encoders, args) -> dict:
    spec = DATASETS[name]
    limited = name == "retina-odir" and args.limit
    print(f"\n== {name}" + (f" (first {args.limit} images only, --limit)" if limited else ""), flush=True)
    store = build_store(name, encoders, args.limit if limited else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = ["+".join(encoders)] if args.fusion and len(encoders) > 1 else []
        apart = fused if args.fusion_heads else []
        results = evaluate(store, models=[*encoders, *[f for f in fused if f not in apart]], heads=args.heads, C=args.C,
                           n_boot=args.n_boot, n_jobs=args.jobs, reference=name if name != "breast-busi" else None,
                           progress=not args.quiet, report_dir=REPO / "reports" / f"bench-{name}",
                           **spec["evaluate"]).to_json()
        if apart:
            t0 = time.perf_counter()
            extra = evaluate(store, models=apart, heads=args.fusion_heads, C=args.C, n_boot=args.n_boot,
                             n_jobs=args.jobs, progress=not args.quiet,
                             report_dir=REPO / "reports" / f"bench-{name}-fusion", **spec["evaluate"]).to_json()
            results["models"].update(extra["models"])
            print(f"  fusion run ({', '.join(args.fusion_heads)}): {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"  split: {results['split']['description']}; {results['split']['n_train']} train / "
          f"{results['split']['n_test']} test rows; anchors: {spec['anchors']}")
    best = (None, None, -1.0)
    for key, model in results["models"].items():
        cells = []
        for m in model["methods"].values():
            if m["kind"] == "retrieval":
                cells.append(f"P@1 {m['metrics']['precision@1']:.3f}")
                continue
            ci = m.get("auc_ci") or m.get("ci")
            cells.append(f"{m['label']} {m['auc']:.4f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""))
            if m["auc"] > best[2]:  # heads and the k-NN vote: every classifier with an AUC
                best = (key, m["label"], m["auc"])
        print(f"  {key:<20} " + " | ".join(cells))
        methods = model["methods"]
        if "lr" in methods and "knn" in methods:
            gap = methods["lr"]["auc"] - methods["knn"]["auc"]
            print(f"  {'':<20} k-NN within 0.02 AUC of LR: {'met' if gap <= 0.02 else f'missed by {gap - 0.02:.3f}'} "
                  f"(LR - k-NN = {gap:+.3f})")
    if spec["goal"] is not None and best[0]:
        verdict = "met" if best[2] >= spec["goal"] else f"missed by {spec['goal'] - best[2]:.3f}"
        print(f"  goal AUC >= {spec['goal']}: best {best[0]} + {best[1]} {best[2]:.4f} -> {verdict}"
              + (" (on the --limit subset)" if limited else ""))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--encoders", default=",".join(ENCODERS))
    ap.add_argument("--limit", type=int, default=None, help="ODIR: first patients up to this many images")
    ap.add_argument("--heads", default=",".join(DEFAULT_HEADS))
    ap.add_argument("--C", default=None, help="comma-separated C grid (default the paper's)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--no-fusion", dest="fusion", action="store_false",
                    help="skip the fused model of all --encoders (evaluated beside them by default)")
    ap.add_argument("--fusion-heads", default="", help="heads of the fused model, in a run of its own (e.g. lr,dvme)")
    args = ap.parse_args()
    args.heads = tuple(h for h in args.heads.split(",") if h)
    args.fusion_heads = tuple(h for h in args.fusion_heads.split(",") if h)
    args.C = tuple(float(c) for c in args.C.split(",")) if args.C else None
    encoders = [e for e in args.encoders.split(",") if e]
    for name in [d for d in args.datasets.split(",") if d]:
        if name not in DATASETS:
            sys.exit(f"unknown dataset {name}; choose from {', '.join(DATASETS)}")
        run(name, encoders, args)


if __name__ == "__main__":
    main()
