#!/usr/bin/env bash
# Regenerates docs/img/quickstart.png (the README figure) from a real quickstart run.
set -euo pipefail
cd "$(dirname "$0")/.."
fedsim run scenarios/quickstart.toml --out runs/quickstart --force --quiet --summary
fedsim report runs/quickstart
python - <<'PY'
import json
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from fedsim.runtime.jsonl import read_jsonl

rows = [r for r in read_jsonl("runs/quickstart/metrics.jsonl") if r.get("test_accuracy") is not None]
cum, total = [], 0
for r in read_jsonl("runs/quickstart/metrics.jsonl"):
    total += r["bytes_up"] + r["bytes_down"]
    if r.get("test_accuracy") is not None:
        cum.append(total / 1e6)
acc = [r["test_accuracy"] for r in rows]
fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
a.plot([r["sim_time"] for r in rows], acc, marker="o", ms=3)
a.set_xlabel("simulated time (s)"); a.set_ylabel("test accuracy"); a.grid(alpha=0.3)
b.plot(cum, acc, marker="o", ms=3, color="C1")
b.set_xlabel("cumulative bytes up + down (MB)"); b.grid(alpha=0.3)
s = json.load(open("runs/quickstart/summary.json"))
fig.suptitle(f"quickstart: FedAvg, mnist5k, CNN — best accuracy {s['best_accuracy']:.3f}")
fig.tight_layout()
fig.savefig("docs/img/quickstart.png", dpi=110)
PY
echo "wrote docs/img/quickstart.png"
