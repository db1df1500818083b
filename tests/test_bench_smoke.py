"""The benchmark harness end to end on a small synthetic dataset, so that it
keeps working between benchmark runs. Its exact-search answers are checked
against numpy: exact search through quiver must have recall 1.0."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_bench_harness_on_synthetic_data(tmp_path):
    port = os.environ["QUIVER_TEST_PORT"]
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--port", port, "--dataset", "synthetic-32",
         "--seconds", "1", "--rounds", "2", "--ef-search", "40", "--cache", str(tmp_path / "cache"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    quiver = next(r for r in results if r["contender"] == "quiver")
    assert quiver["exact"]["recall"] == 1.0
    assert quiver["exact"]["qps"] > 0
    for f in quiver["filtered"]:
        if f["mode"] == "exact":
            assert f["rows"] == 10.0 and f["recall"] == 1.0, f
    assert quiver["insert_rate"] > 0
    # two rounds: the build repeated by REINDEX, two insert runs, and their
    # medians (the mean, for two) reported
    builds, inserts = quiver["index"]["build_runs"], quiver["insert_runs"]
    assert len(builds) == 2 and min(builds) > 0 and len(inserts) == 2
    assert quiver["index"]["build_s"] == pytest.approx(sum(builds) / 2)
    assert quiver["insert_rate"] == pytest.approx(sum(inserts) / 2)
    md = (tmp_path / "out" / "results.md").read_text()
    assert "| exact search: QPS |" in md
    assert "medians of 2 rounds" in md
    assert (tmp_path / "out" / "recall-qps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
