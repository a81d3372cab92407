"""Run with the pre-issue-13 code on PYTHONPATH: writes a small synthetic store and what that code answered on it."""
import json, sys
from pathlib import Path
import numpy as np
from medsearch.store import EMBEDDED, ModelData, StoreData, write_store, read_store
from medsearch.commands.eval import evaluate
from medsearch.commands.info import info

out = Path(sys.argv[1])
rng = np.random.default_rng(0)
n, dim, k = 60, 16, 3
cluster = np.arange(n) % k
centres = rng.normal(0, 1, (k, dim)) * 3
ids = [f"img{i:03d}" for i in range(n)]
groups = [f"p{i // 2}" for i in range(n)]
data = StoreData(ids, ids, cluster.astype(np.int64), ["a", "b", "c"], "multiclass", groups, None,
                 attrs={"dataset_root": "/data/synthetic", "layout": "folders"})
prov = {"encoder": "synthetic", "weights_source": "random-init", "weights_sha256": None, "dim": dim,
        "preprocess": {"resize": 64, "crop": 64, "interpolation": "bilinear", "norm": "imagenet",
                       "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
emb = (centres[cluster] + rng.normal(0, 6.0, (n, dim))).astype(np.float32)
data.models["m1"] = ModelData(emb, np.full(n, EMBEDDED, np.int8), [""] * n, {"provenance": json.dumps(prov)})
data.sha256 = [f"{i:064x}" for i in range(n)]
data.file_stat = np.tile(np.array([[100, 1]], np.int64), (n, 1))
out.mkdir(parents=True, exist_ok=True)
write_store(data, out)
read_store(out)
res = evaluate(str(out), heads=("lr", "linear-svc"), C=(0.1, 1.0), n_boot=100, n_jobs=1, progress=False,
               report_dir="/tmp/compat/fixture-report")
summary = info(str(out))
json.dump({"eval": res, "info": summary}, open(out.parent / "answers.json", "w"), indent=1, default=str)
