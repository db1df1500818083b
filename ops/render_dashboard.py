"""Renders the panels of ops/grafana-dashboard.json from a running
Prometheus into one PNG, for people without Grafana at hand and for the
README's picture:

    python ops/render_dashboard.py http://127.0.0.1:9090 out.png [--minutes 5]

Each panel's expressions are read with the range query API (step 1 s) and
drawn as lines, one per series, labelled as the dashboard labels them."""
import argparse
import json
import math
import pathlib
import re
import time
import urllib.parse
import urllib.request

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DASHBOARD = pathlib.Path(__file__).resolve().parent / "grafana-dashboard.json"


def query_range(base: str, expr: str, start: float, end: float) -> list:
    q = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 1})
    with urllib.request.urlopen(f"{base}/api/v1/query_range?{q}", timeout=10) as r:
        body = json.loads(r.read())
    if body.get("status") != "success":
        raise RuntimeError(f"{expr}: {body}")
    return body["data"]["result"]


def legend(fmt: str, labels: dict) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "").strip() or json.dumps(labels)


def render(base: str, out: str, minutes: float = 5) -> int:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    end = time.time()
    start = end - 60 * minutes
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.6 * rows), squeeze=False)
    drawn = 0
    for ax, panel in zip(axes.flat, panels):
        ax.set_title(panel.get("title", ""), fontsize=9)
        for t in panel.get("targets", []):
            for s in query_range(base, t["expr"], start, end):
                xs = [float(v[0]) - end for v in s["values"]]
                ys = [float(v[1]) for v in s["values"]]
                ax.plot(xs, ys, label=legend(t.get("legendFormat", ""), s["metric"]))
                drawn += 1
        ax.tick_params(labelsize=7)
        ax.set_xlabel("seconds before now", fontsize=7)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    return drawn


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("prometheus")
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=5)
    a = ap.parse_args()
    print(f"{render(a.prometheus.rstrip('/'), a.out, a.minutes)} series drawn into {a.out}")
