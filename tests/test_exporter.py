"""quiver's operations files on the real components: Debian's
prometheus-postgres-exporter with ops/postgres_exporter-queries.yaml
(auto-discovering two quiver databases, as a pg_monitor role) and Debian's
Prometheus with ops/quiver-alerts.yml, all on loopback (cluster 28847,
exporter 29187, Prometheus 29090). Checks that both scrape paths give the
same names, types and labels, that build progress shows a plain CREATE
INDEX, and that every expression of ops/grafana-dashboard.json and every
alert rule returns the series it should through Prometheus' query API."""
import json
import os
import pathlib
import sys
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster import Cluster
from vectors import clustered, text

REPO = pathlib.Path(__file__).resolve().parent.parent
EXPORTER = shutil.which("prometheus-postgres-exporter")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
PORT, EXPORTER_PORT, PROMETHEUS_PORT = 28847, 29187, 29090
DIM = 64

pytestmark = pytest.mark.skipif(not (EXPORTER and PROMETHEUS and PROMTOOL),
                                reason="Debian's prometheus and prometheus-postgres-exporter are not installed")


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.time() + seconds
    while True:
        try:
            get(url)
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def series(body: str, prefix: str = "quiver_") -> dict:
    """family name -> (type, set of label sets without the exporter's server label)."""
    out = {}
    for f in text_string_to_metric_families(body):
        if not f.name.startswith(prefix):
            continue
        labels = set()
        for s in f.samples:
            ls = {k: v for k, v in s.labels.items() if k != "server"}
            if "le" in ls:
                ls["le"] = str(float(ls["le"]))
            labels.add((s.name, tuple(sorted(ls.items()))))
        out[f.name] = (f.type, labels)
    return out


def promql(expr: str) -> list:
    q = urllib.parse.urlencode({"query": expr})
    r = json.loads(get(f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query?{q}"))
    assert r["status"] == "success", (expr, r)
    return r["data"]["result"]


def test_alert_rules_pass_promtool():
    r = subprocess.run([PROMTOOL, "check", "rules", str(REPO / "ops/quiver-alerts.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 7 rules found" in r.stdout, r.stdout


def test_exporter_and_prometheus_see_what_quiver_reports():
    c = Cluster(PORT, "exporter").init("shared_preload_libraries = 'quiver'\nshared_buffers = 1MB\n").start()
    work = pathlib.Path(tempfile.mkdtemp(prefix="quiver-prom-"))
    procs = []
    stop = threading.Event()
    try:
        data = clustered(4000, DIM, seed=31)
        with c.connect() as admin:
            admin.execute("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
            for db in ("q1", "q2", "other"):
                admin.execute(f"CREATE DATABASE {db}")
        for db in ("q1", "q2"):
            with c.connect(db) as conn:
                conn.execute("CREATE EXTENSION quiver")
                conn.execute(f"SELECT quiver.create_collection('docs', {DIM}, distance => 'l2')")
                with conn.cursor().copy("COPY docs (id, embedding) FROM STDIN") as cp:
                    for i, v in enumerate(data if db == "q1" else data[:100]):
                        cp.write_row((i, text(v)))
                conn.execute("REINDEX TABLE docs")
                conn.execute("ANALYZE docs")
        with c.connect("q2") as conn:  # a collection without its index: red
            conn.execute("DROP INDEX docs_embedding_idx")

        def searcher():
            with c.connect("q1") as conn:
                conn.execute("SET enable_seqscan = off")
                k = 0
                while not stop.is_set():
                    conn.execute("SELECT id FROM docs ORDER BY embedding <-> %s LIMIT 10", (text(data[k % 4000]),))
                    k += 1
                    if k % 50 == 0:  # an error quiver raises: wrong dimensions
                        try:
                            conn.execute("SELECT id FROM docs ORDER BY embedding <-> '[1,2,3]' LIMIT 1")
                        except Exception:  # noqa: BLE001 - the error is the point
                            pass
                    time.sleep(0.01)

        t = threading.Thread(target=searcher)
        t.start()
        procs.append(subprocess.Popen(
            [EXPORTER, f"--web.listen-address=127.0.0.1:{EXPORTER_PORT}",
             f"--extend.query-path={REPO / 'ops/postgres_exporter-queries.yaml'}",
             "--auto-discover-databases", "--exclude-databases=postgres,template0,template1,other"],
            env={"DATA_SOURCE_NAME": f"host=127.0.0.1 port={PORT} user=watcher dbname=q1 sslmode=disable"},
            stdout=open(work / "exporter.log", "w"), stderr=subprocess.STDOUT))
        wait_for(f"http://127.0.0.1:{EXPORTER_PORT}/metrics")
        time.sleep(2)  # some searches counted

        # 1. one namespace: the exporter's series are prometheus_metrics()'s, per database
        body = get(f"http://127.0.0.1:{EXPORTER_PORT}/metrics")
        exported = series(body)
        assert exported, body[-2000:]
        for db in ("q1", "q2"):
            with c.connect(db) as conn:
                mine = series(conn.execute("SELECT quiver.prometheus_metrics()").fetchone()[0])
            for name, (typ, labels) in mine.items():
                assert name in exported, (name, sorted(exported))
                assert exported[name][0] == typ, (name, exported[name][0], typ)
                theirs = {x for x in exported[name][1] if ("datname", db) in x[1]}
                # histogram buckets and counters: the same label sets
                assert {x for x in labels} == theirs, (name, labels ^ theirs)
        assert 'quiver_collection_status_code{collection="docs",datname="q2"' in body

        # 2. a plain CREATE INDEX shows its progress while it runs
        with c.connect("q1") as conn:
            conn.execute(f"CREATE TABLE big (v vector({DIM}))")
            with conn.cursor().copy("COPY big FROM STDIN") as cp:
                for _ in range(5):
                    for v in data:
                        cp.write_row((text(v),))
        seen = set()

        def build():
            with c.connect("q1") as conn:
                conn.execute("SET maintenance_work_mem = '1MB'")
                conn.execute("CREATE INDEX big_idx ON big USING hnsw (v vector_l2_ops)")

        b = threading.Thread(target=build)
        b.start()
        while b.is_alive():
            for f in text_string_to_metric_families(get(f"http://127.0.0.1:{EXPORTER_PORT}/metrics")):
                if f.name == "quiver_index_build_progress":
                    seen.update((s.labels["table"], s.labels["phase"]) for s in f.samples)
            time.sleep(0.3)
        b.join()
        assert any(table == "big" and phase.startswith("building index: ") for table, phase in seen), seen

        # 3. Prometheus: every dashboard expression and alert rule
        (work / "prometheus.yml").write_text(f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["{REPO / 'ops/quiver-alerts.yml'}"]
scrape_configs:
  - job_name: quiver
    static_configs: [{{targets: ["127.0.0.1:{EXPORTER_PORT}"]}}]
""")
        procs.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"],
            stdout=open(work / "prometheus.log", "w"), stderr=subprocess.STDOUT))
        wait_for(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready")
        deadline = time.time() + 40
        while not promql("quiver_search_scans_total offset 3s") and time.time() < deadline:
            time.sleep(1)
        time.sleep(3)
        dashboard = json.loads((REPO / "ops/grafana-dashboard.json").read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        assert len(exprs) == 10
        for e in exprs:
            assert promql(e), f"dashboard expression returned nothing: {e}"
        searched = promql('sum by (datname, index) (rate(quiver_search_scans_total[5m]))')
        assert {(r["metric"]["datname"], r["metric"]["index"]) for r in searched} == {("q1", "docs_embedding_idx")}

        rules = {r["name"]: r for g in json.loads(get(f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/rules"))["data"]["groups"]
                 for r in g["rules"]}
        assert set(rules) == {"QuiverSearchLatencyHigh", "QuiverSearchErrors", "QuiverCollectionNotGreen",
                              "QuiverCollectionRed", "QuiverInRecovery", "QuiverMetricsNotCollected",
                              "QuiverIndexLargerThanSharedBuffers"}, sorted(rules)
        assert all(r["health"] == "ok" for r in rules.values()), rules

        def labels_of(name, *keys):
            return {tuple(r["metric"][k] for k in keys) for r in promql(rules[name]["query"])}

        assert labels_of("QuiverCollectionNotGreen", "datname", "collection") == {("q2", "docs")}
        assert labels_of("QuiverCollectionRed", "datname", "collection") == {("q2", "docs")}
        assert labels_of("QuiverSearchErrors", "datname", "index") == {("q1", "docs_embedding_idx")}
        # 1 MB of shared_buffers: both hnsw indexes of q1 are larger
        assert ("q1", "docs_embedding_idx") in labels_of("QuiverIndexLargerThanSharedBuffers", "datname", "index")
        assert labels_of("QuiverInRecovery", "server") == set()  # a primary
        assert labels_of("QuiverMetricsNotCollected", "server") == set()  # preloaded
        # fast scans: no p99 above 100 ms, but the quantile itself is there
        assert labels_of("QuiverSearchLatencyHigh", "index") == set()
        p99 = promql(rules["QuiverSearchLatencyHigh"]["query"].rsplit(">", 1)[0])
        assert [r["metric"]["index"] for r in p99] == ["docs_embedding_idx"]
        assert 0 < float(p99[0]["value"][1]) < 0.1, p99

        # 4. the dashboard's panels as a picture (QUIVER_DASHBOARD_PNG keeps it)
        sys.path.insert(0, str(REPO / "ops"))
        from render_dashboard import render
        png = os.environ.get("QUIVER_DASHBOARD_PNG") or str(work / "dashboard.png")
        assert render(f"http://127.0.0.1:{PROMETHEUS_PORT}", png, minutes=1) >= len(exprs)
        assert pathlib.Path(png).stat().st_size > 10_000
    finally:
        stop.set()
        if "t" in locals():
            t.join()
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        c.destroy()
        shutil.rmtree(work, ignore_errors=True)
