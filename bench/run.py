#!/usr/bin/env python3
"""quiver's benchmark harness: real datasets, side by side with pgvector.

Loads each dataset into one database per contender (quiver always; pgvector
when its `vector` extension is installed on the server), builds the `hnsw`
index with the same settings when the contender has one, and measures:
load time, build time, index size; per `hnsw.ef_search` recall@10 (against
exact search), QPS and p50/p99 latency of single-client queries; exact
(sequential) search; filtered search at 10% and 1% selectivity with and
without iterative scan (the filter column has a btree index, and each
planner chooses between it and the vector index); the insert rate of 2
clients with the index present.

How it measures: latency and QPS come from pgbench (a C client, prepared
statements, query vectors read from a table by id inside the statement), so
no Python is on the timed path; per-transaction latencies come from
pgbench's log. Recall is computed separately by running every query once
through psycopg and comparing ids with numpy's exact answer. Every point is
taken for all contenders in turn, over several rounds in alternating order,
and medians are reported (`--rounds`): shared machines drift by 10-30%
over minutes, which measuring one contender after the other turned into
ratios off by as much (an insert rate of 0.60x of pgvector's in one such
run, 1.2-1.5x in alternating runs right after).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pwd
import pathlib
import platform
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import psycopg

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import datasets as ds  # noqa: E402

PG_BIN = pathlib.Path("/usr/lib/postgresql/15/bin")
CONTENDERS = {"quiver": "quiver", "quiver-binary": "quiver", "pgvector": "vector"}  # name -> extension
# index options beyond m and ef_construction, per contender
INDEX_OPTIONS = {"quiver-binary": ", quantization = 'binary'"}
OVERSAMPLING = [1, 1.5, 2, 3, 4]
OPCLASS = {"cosine": ("vector_cosine_ops", "<=>"), "l2": ("vector_l2_ops", "<->")}


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


class Server:
    def __init__(self, host: str, port: int, user: str):
        self.host, self.port, self.user = host, port, user

    def dsn(self, db: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={db}"

    def connect(self, db: str) -> psycopg.Connection:
        return psycopg.connect(self.dsn(db), autocommit=True)

    def available(self, extension: str) -> str | None:
        with self.connect("postgres") as c:
            row = c.execute("SELECT default_version FROM pg_available_extensions WHERE name = %s",
                            (extension,)).fetchone()
        return row[0] if row else None

    def pgbench(self, db: str, script: str, seconds: float, clients: int, options: str,
                workdir: pathlib.Path) -> tuple[float, np.ndarray]:
        """Runs `script` for `seconds`; returns (transactions per second, latencies in ms)."""
        f = workdir / "script.sql"
        f.write_text(script)
        for old in workdir.glob("pgbench_log*"):
            old.unlink()
        env = dict(os.environ, PGOPTIONS=options)
        cmd = [str(PG_BIN / "pgbench"), "-n", "-h", self.host, "-p", str(self.port), "-U", self.user,
               "-c", str(clients), "-j", str(clients), "-T", str(max(1, int(round(seconds)))),
               "-M", "prepared", "-f", str(f), "-l", "--log-prefix", str(workdir / "pgbench_log"), db]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=workdir)
        if out.returncode != 0:
            raise RuntimeError(f"pgbench failed: {out.stderr.strip()}")
        tps = float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out.stdout).group(1))
        lat = []
        for logf in workdir.glob("pgbench_log*"):
            for line in logf.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    lat.append(int(parts[2]) / 1000.0)
        return tps, np.array(lat)


def vec_text(row: np.ndarray) -> str:
    return "[" + ",".join(map(repr, row.astype(np.float64).tolist())) + "]"


def load(server: Server, db: str, ext: str, data: ds.Dataset) -> dict:
    with server.connect("postgres") as c:
        c.execute(f'DROP DATABASE IF EXISTS "{db}"')
        c.execute(f'CREATE DATABASE "{db}"')
    with server.connect(db) as c:
        c.execute(f"CREATE EXTENSION {ext}")
        d = data.dim
        c.execute(f"CREATE TABLE items (id int PRIMARY KEY, cat10 int, cat100 int, embedding vector({d}))")
        c.execute(f"CREATE TABLE queries (id int PRIMARY KEY, cat10 int, cat100 int, embedding vector({d}))")
        c.execute("CREATE SEQUENCE bench_insert_ids START 100000000")
        rows = "".join(f"{i}\t{data.cat10[i]}\t{data.cat100[i]}\t{vec_text(v)}\n"
                       for i, v in enumerate(data.base)).encode()
        qrows = "".join(f"{i + 1}\t{data.qcat10[i]}\t{data.qcat100[i]}\t{vec_text(v)}\n"
                        for i, v in enumerate(data.queries)).encode()
        start = time.perf_counter()
        with c.cursor() as cur:
            with cur.copy("COPY items FROM STDIN") as cp:
                for s in range(0, len(rows), 1 << 20):
                    cp.write(rows[s:s + (1 << 20)])
        load_s = time.perf_counter() - start
        with c.cursor() as cur:
            with cur.copy("COPY queries FROM STDIN") as cp:
                cp.write(qrows)
        # the filter columns get the btree an application would give them,
        # so that each planner may choose between its vector index and an
        # exact search of the filtered rows (the filtered searches below)
        c.execute("CREATE INDEX ON items (cat10)")
        c.execute("CREATE INDEX ON items (cat100)")
        c.execute("VACUUM ANALYZE items")
        c.execute("VACUUM ANALYZE queries")
        version = c.execute("SELECT extversion FROM pg_extension WHERE extname = %s", (ext,)).fetchone()[0]
    return {"load_s": load_s, "version": version}


def build_index(server: Server, db: str, data: ds.Dataset, m: int, efc: int, mwm: str,
                extra: str = "") -> dict | None:
    with server.connect(db) as c:
        if not c.execute("SELECT 1 FROM pg_am WHERE amname = 'hnsw'").fetchone():
            return None
        c.execute(f"SET maintenance_work_mem = '{mwm}'")
        c.execute("SET max_parallel_maintenance_workers = 1")  # leader + 1 worker on 2 cores
        opclass = OPCLASS[data.metric][0]
        start = time.perf_counter()
        c.execute(f"CREATE INDEX items_embedding_idx ON items USING hnsw (embedding {opclass}) "
                  f"WITH (m = {m}, ef_construction = {efc}{extra})")
        build_s = time.perf_counter() - start
        size = c.execute("SELECT pg_relation_size('items_embedding_idx')").fetchone()[0]
    return {"build_s": build_s, "index_bytes": size}


def search_sql(op: str, where: str = "") -> str:
    q = "(SELECT embedding FROM queries WHERE id = :q)"
    return f"SELECT id FROM items {where} ORDER BY embedding {op} {q} LIMIT 10"


def query_script(sql: str, nq: int) -> str:
    """A pgbench script running `sql` for a random query id."""
    return f"\\set q random(1, {nq})\n{sql};\n"


def recall_of(server: Server, db: str, sql: str, settings: dict, gt: np.ndarray, n: int) -> tuple[float, float]:
    """(mean recall@10, mean rows returned) over the first n queries."""
    psql_sql = sql.replace(":q", "%(q)s")
    hits, returned, total = 0, 0, 0
    with server.connect(db) as c:
        for k, v in settings.items():
            c.execute(f"SET {k} = '{v}'")
        for i in range(n):
            ids = [r[0] for r in c.execute(psql_sql, {"q": i + 1}).fetchall()]
            truth = [t for t in gt[i, :10].tolist() if t >= 0]
            hits += len(set(ids) & set(truth))
            total += len(truth)
            returned += len(ids)
    return (hits / total if total else 1.0), returned / n


def restart_for(contender: str) -> None:
    """Restarts the benchmark cluster with quiver preloaded for quiver (its
    search metrics live in shared memory) and without for pgvector, whose
    library defines the same hnsw.* settings and cannot load beside a
    preloaded quiver. bench.sh says where the cluster is."""
    data, logfile = os.environ.get("QUIVER_BENCH_DATA"), os.environ.get("QUIVER_BENCH_LOG")
    if not data:
        return
    preload = "quiver" if contender.startswith("quiver") else ""
    cmd = [str(PG_BIN / "pg_ctl"), "-D", data, "-l", logfile, "-w", "restart",
           "-o", f"-c shared_preload_libraries={preload}"]
    if os.geteuid() != pwd.getpwnam("postgres").pw_uid:
        cmd = ["sudo", "-u", "postgres", "--"] + cmd
    subprocess.run(cmd, check=True, capture_output=True, cwd="/")


def metrics_overhead(server: Server, db: str, sql: str, nq: int, seconds: float, workdir) -> dict | None:
    """QPS at ef_search 40 with quiver.track_metrics off and on, five rounds
    in alternating order (off-on, on-off, ...) so drift cancels; medians. The
    cost of counting searches and latency. None when quiver is not preloaded
    (nothing is counted then)."""
    with server.connect(db) as c:
        if not c.execute("SELECT (quiver._metrics_json()::jsonb ->> 'enabled')::boolean").fetchone()[0]:
            return None
    script = query_script(sql, nq)
    qps = {"off": [], "on": []}
    server.pgbench(db, script, seconds, 1, "-c hnsw.ef_search=40", workdir)  # warm-up, not counted
    for rnd in range(5):
        for mode in (("off", "on") if rnd % 2 == 0 else ("on", "off")):
            tps, _ = server.pgbench(db, script, seconds, 1, f"-c hnsw.ef_search=40 -c quiver.track_metrics={mode}", workdir)
            qps[mode].append(tps)
    off, on = float(np.median(qps["off"])), float(np.median(qps["on"]))
    log(f"  metrics off {off:.0f} QPS, on {on:.0f} QPS ({100 * (1 - on / off):+.1f}% cost)")
    return {"qps_off": off, "qps_on": on, "cost_pct": 100 * (1 - on / off)}


def prepare_contender(server: Server, name: str, ext: str, data: ds.Dataset, args) -> dict:
    """Loads the dataset into the contender's database and builds its index."""
    db = f"bench_{name}_{data.name}".replace("-", "_")
    log(f"{data.name} / {name}: loading {len(data.base)} rows")
    res = {"contender": name, "db": db, **load(server, db, ext, data)}
    with server.connect(db) as c:
        # an autovacuum started by the insert rounds' deletes would land in
        # whichever measurement follows; the harness vacuums itself instead
        c.execute("ALTER TABLE items SET (autovacuum_enabled = off)")
    idx = build_index(server, db, data, args.m, args.ef_construction, args.maintenance_work_mem,
                      INDEX_OPTIONS.get(name, ""))
    res["index"] = idx
    if idx:
        idx["build_runs"] = [idx["build_s"]]
        log(f"{data.name} / {name}: index built in {idx['build_s']:.1f}s, {idx['index_bytes'] / 2**20:.0f} MB")
    return res


def rebuild(server: Server, res: dict, mwm: str) -> float:
    """Times a REINDEX of the contender's vector index (same settings as the build)."""
    with server.connect(res["db"]) as c:
        c.execute(f"SET maintenance_work_mem = '{mwm}'")
        c.execute("SET max_parallel_maintenance_workers = 1")
        start = time.perf_counter()
        c.execute("REINDEX INDEX items_embedding_idx")
        return time.perf_counter() - start


def points(res: dict, data: ds.Dataset, args) -> list[tuple]:
    """What is measured for a contender: (key, sql, settings, ground truth, recall queries)."""
    op = OPCLASS[data.metric][1]
    nq = len(data.queries)
    idx = res["index"]
    out = []
    if idx:
        for ef in args.ef_search:
            out.append((("search", ef), search_sql(op), {"hnsw.ef_search": ef}, "all", min(nq, args.recall_queries)))
    if idx and res["contender"] == "quiver-binary":
        # recall against quiver.oversampling at the default ef_search
        for os_ in OVERSAMPLING:
            out.append((("oversampling", os_), search_sql(op), {"hnsw.ef_search": 40, "quiver.oversampling": os_},
                        "all", min(nq, args.recall_queries)))
    exact = {"enable_indexscan": "off", "max_parallel_workers_per_gather": 0}
    out.append((("exact",), search_sql(op), exact, "all", min(nq, args.exact_queries)))
    for col, sel in (("cat10", "10%"), ("cat100", "1%")):
        where = f"WHERE {col} = (SELECT {col} FROM queries WHERE id = :q)"
        modes = [("exact", exact)]
        if idx:
            modes = [("index", {"hnsw.ef_search": 40, "hnsw.iterative_scan": "off"}),
                     ("index+iterative", {"hnsw.ef_search": 40, "hnsw.iterative_scan": "relaxed_order"})] + modes
        for mode, settings in modes:
            n = min(nq, args.exact_queries if mode == "exact" else args.recall_queries)
            out.append((("filtered", sel, mode), search_sql(op, where), settings, col, n))
    return out


def insert_round(server: Server, res: dict, nq: int, seconds: float, workdir) -> float:
    """Rows per second of 2 clients inserting with the index present; the
    rows are deleted and vacuumed away afterwards (outside the timing):
    they are copies of the queries, and their dead elements would sit
    nearest to every later query."""
    script = ("\\set q random(1, %d)\nINSERT INTO items (id, cat10, cat100, embedding) "
              "SELECT nextval('bench_insert_ids'), cat10, cat100, embedding FROM queries WHERE id = :q;\n" % nq)
    tps, _ = server.pgbench(res["db"], script, seconds, 2, "", workdir)
    with server.connect(res["db"]) as c:
        c.execute("DELETE FROM items WHERE id >= 100000000")
        c.execute("VACUUM items")
    return tps


def bench_dataset(server: Server, contenders: dict, data: ds.Dataset, args, workdir) -> list[dict]:
    """Prepares every contender, then measures each point for all of them
    in turn, `args.rounds` times, alternating the order: the machine's
    drift over minutes (10-30% on shared machines) lands on all contenders
    alike instead of on whichever ran in a slow stretch. Recall is measured
    in the first round, on the fresh builds (later rounds search indexes
    that have been through an insert round, its delete and VACUUM, on
    every contender alike); QPS, latencies, build time and insert rate are
    medians over the rounds."""
    restart_for("")  # nothing preloaded: pgvector's library cannot load beside quiver's
    runs = [prepare_contender(server, name, ext, data, args) for name, ext in contenders.items()]
    nq = len(data.queries)
    for rnd in range(1, args.rounds):
        for res in (runs if rnd % 2 == 0 else runs[::-1]):
            if res["index"]:
                res["index"]["build_runs"].append(rebuild(server, res, args.maintenance_work_mem))
    for res in runs:
        if res["index"]:
            res["index"]["build_s"] = float(np.median(res["index"]["build_runs"]))
            log(f"{data.name} / {res['contender']}: build {res['index']['build_s']:.1f}s (median of "
                + ", ".join(f"{b:.1f}" for b in res["index"]["build_runs"]) + ")")
    plans = {res["contender"]: {key: rest for key, *rest in points(res, data, args)} for res in runs}
    keys = list(dict.fromkeys(k for plan in plans.values() for k in plan))
    samples: dict = {}
    for rnd in range(args.rounds):
        order = runs if rnd % 2 == 0 else runs[::-1]
        for key in keys:
            for res in (r for r in order if key in plans[r["contender"]]):
                sql, settings, gt_kind, recall_n = plans[res["contender"]][key]
                s = samples.setdefault((res["contender"], key), {"qps": [], "p50_ms": [], "p99_ms": []})
                if rnd == 0:
                    s["recall"], s["rows"] = recall_of(server, res["db"], sql, settings,
                                                       data.ground_truth(gt_kind), recall_n)
                options = " ".join(f"-c {k}={v}" for k, v in settings.items())
                tps, lat = server.pgbench(res["db"], query_script(sql, nq), args.seconds, 1, options, workdir)
                s["qps"].append(tps)
                if len(lat):
                    s["p50_ms"].append(float(np.percentile(lat, 50)))
                    s["p99_ms"].append(float(np.percentile(lat, 99)))
                log(f"  round {rnd + 1} {res['contender']} {key}: recall {s['recall']:.3f}, {tps:.0f} QPS")
        for res in order:
            res.setdefault("insert_runs", []).append(insert_round(server, res, nq, args.seconds, workdir))
            log(f"  round {rnd + 1} {res['contender']} inserts (2 clients): {res['insert_runs'][-1]:.0f} rows/s")

    def summary(name, key):
        s = samples[(name, key)]
        med = lambda xs: float(np.median(xs)) if xs else None  # noqa: E731
        return {"recall": s["recall"], "rows": s["rows"], "qps": med(s["qps"]),
                "p50_ms": med(s["p50_ms"]), "p99_ms": med(s["p99_ms"])}

    for res in runs:
        name = res["contender"]
        keys = list(plans[name])
        res["searches"] = [dict(summary(name, k), ef_search=k[1]) for k in keys if k[0] == "search"]
        res["oversampling"] = [dict(summary(name, k), oversampling=k[1]) for k in keys if k[0] == "oversampling"]
        res["exact"] = summary(name, ("exact",))
        res["filtered"] = [dict(summary(name, k), selectivity=k[1], mode=k[2]) for k in keys if k[0] == "filtered"]
        res["insert_rate"] = float(np.median(res["insert_runs"]))
        if name == "quiver" and res["index"]:
            restart_for("quiver")
            res["metrics_overhead"] = metrics_overhead(server, res["db"], search_sql(OPCLASS[data.metric][1]),
                                                       nq, args.seconds, workdir)
            restart_for("")
    return runs


# ----------------------------------------------------------------- report --

def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def ratio(a, b, higher_is_better=True):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}x"


def report(results: list[dict], env: dict, out: pathlib.Path) -> str:
    lines = [f"# quiver benchmark — {env['date']}", "",
             f"Machine: {env['machine']}. PostgreSQL {env['postgres']}. "
             + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + ".", "",
             "Latency and QPS: pgbench, 1 client, prepared statements, query vectors read from a table "
             f"inside the statement, {env['seconds']} s per point. Recall@10 against exact search (numpy). "
             "Inserts: pgbench, 2 clients, with the index when the contender has one. "
             f"Build time, QPS, latencies and insert rate are medians of {env['rounds']} rounds that take "
             "every point for all contenders in turn, in alternating order.", ""]
    for dataset in sorted({r["dataset"] for r in results}):
        rs = {r["contender"]: r for r in results if r["dataset"] == dataset}
        names = [n for n in CONTENDERS if n in rs]
        # ratio columns: each quiver variant against pgvector
        pairs = [(n, "pgvector") for n in names if n != "pgvector" and "pgvector" in names]
        head = "| metric | " + " | ".join(names + [f"{a} / {b}" for a, b in pairs]) + " |"
        lines += [f"## {dataset} ({rs[names[0]]['rows']} rows, {rs[names[0]]['metric']})", "", head,
                  "|---" * (len(names) + 1 + len(pairs)) + "|"]

        def row(label, get, spec, better=True):
            vals = {n: get(rs[n]) for n in names}
            cells = [fmt(vals[n], spec) for n in names]
            extra = [ratio(vals[a], vals[b]) for a, b in pairs]
            lines.append(f"| {label} | " + " | ".join(cells + extra) + " |")

        row("load (s)", lambda r: r["load_s"], ".1f")
        row("build (s)", lambda r: r["index"] and r["index"]["build_s"], ".1f")
        row("index size (MB)", lambda r: r["index"] and r["index"]["index_bytes"] / 2**20, ".0f")
        efs = sorted({s["ef_search"] for n in names for s in rs[n]["searches"]})
        for ef in efs:
            def pick(r, key, ef=ef):
                return next((s[key] for s in r["searches"] if s["ef_search"] == ef), None)
            row(f"ef_search {ef}: recall@10", lambda r: pick(r, "recall"), ".3f")
            row(f"ef_search {ef}: QPS", lambda r: pick(r, "qps"), ".0f")
            row(f"ef_search {ef}: p50 (ms)", lambda r: pick(r, "p50_ms"), ".2f")
            row(f"ef_search {ef}: p99 (ms)", lambda r: pick(r, "p99_ms"), ".2f")
        row("exact search: QPS", lambda r: r["exact"]["qps"], ".1f")
        row("exact search: p99 (ms)", lambda r: r["exact"]["p99_ms"], ".1f")
        modes = sorted({(f["selectivity"], f["mode"]) for n in names for f in rs[n]["filtered"]})
        for sel, mode in modes:
            def pickf(r, key, sel=sel, mode=mode):
                return next((f[key] for f in r["filtered"] if f["selectivity"] == sel and f["mode"] == mode), None)
            row(f"filter {sel}, {mode}: rows/query", lambda r: pickf(r, "rows"), ".1f")
            row(f"filter {sel}, {mode}: recall@10", lambda r: pickf(r, "recall"), ".3f")
            row(f"filter {sel}, {mode}: QPS", lambda r: pickf(r, "qps"), ".1f")
        row("inserts, 2 clients (rows/s)", lambda r: r["insert_rate"], ".0f")
        curve = rs.get("quiver-binary", {}).get("oversampling")
        if curve:
            lines += ["", "quiver-binary, recall@10 against quiver.oversampling at ef_search 40 "
                      "(a beam of sqrt(oversampling) x ef_search on codes, oversampling x ef_search candidates rescored):", "",
                      "| oversampling | recall@10 | QPS | p99 (ms) |", "|---|---|---|---|"]
            lines += [f"| {c['oversampling']} | {c['recall']:.3f} | {c['qps']:.0f} | {c['p99_ms']:.2f} |" for c in curve]
        q = rs.get("quiver", {}).get("metrics_overhead")
        if q:
            lines += ["", f"quiver with search metrics (quiver.track_metrics) off / on, ef_search 40: "
                      f"{q['qps_off']:.0f} / {q['qps_on']:.0f} QPS ({q['cost_pct']:+.1f}% cost)."]
        lines.append("")
    plot = plot_recall_qps(results, out)
    if plot:
        lines += [f"![recall versus QPS]({plot.name})", ""]
    text = "\n".join(lines)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps({"env": env, "results": results}, indent=1))
    return text


def plot_recall_qps(results: list[dict], out: pathlib.Path) -> pathlib.Path | None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sets = sorted({r["dataset"] for r in results})
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], sets):
        for r in (r for r in results if r["dataset"] == dataset):
            pts = [(s["recall"], s["qps"], s["ef_search"]) for s in r["searches"]]
            pts.append((r["exact"]["recall"], r["exact"]["qps"], "exact"))
            xs, ys, labels = zip(*pts)
            ax.plot(xs, ys, marker="o", label=r["contender"])
            for x, y, l in pts:
                ax.annotate(str(l), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries per second (1 client)")
        ax.set_title(dataset)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = out / "recall-qps.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def environment(server: Server, versions: dict, seconds: float, rounds: int) -> dict:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    with server.connect("postgres") as c:
        pg = c.execute("SHOW server_version").fetchone()[0]
    return {"date": datetime.date.today().isoformat(),
            "machine": f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GB RAM, {platform.system()} {platform.release()}",
            "postgres": pg, "versions": versions, "seconds": seconds, "rounds": rounds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", action="append", choices=list(ds.PREPARERS),
                   help="dataset(s) to run (default: wordnet-minilm-384 and fashion-mnist-784)")
    p.add_argument("--contender", action="append", choices=list(CONTENDERS),
                   help="measure only these (default: all that are installed)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("QUIVER_BENCH_PORT", 28817)))
    p.add_argument("--user", default="postgres")
    p.add_argument("--m", type=int, default=16)
    p.add_argument("--ef-construction", type=int, default=64)
    p.add_argument("--maintenance-work-mem", default="1GB")
    p.add_argument("--ef-search", type=int, nargs="+", default=[10, 20, 40, 100, 200])
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each pgbench point")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating rounds per point (and builds); medians are reported")
    p.add_argument("--recall-queries", type=int, default=1000)
    p.add_argument("--exact-queries", type=int, default=100, help="queries used for exact-search recall")
    p.add_argument("--cache", type=pathlib.Path,
                   default=pathlib.Path(__file__).resolve().parent.parent / ".build" / "bench")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).resolve().parent / "results")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    names = args.dataset or ["wordnet-minilm-384", "fashion-mnist-784"]
    server = Server(args.host, args.port, args.user)
    contenders = {}
    for name, ext in CONTENDERS.items():
        if args.contender and name not in args.contender:
            continue
        v = server.available(ext)
        if v:
            contenders[name] = ext
        elif ext == "quiver":
            raise SystemExit("quiver is not installed on the server: run ./scripts/demo.sh first")
        else:
            log("pgvector (extension 'vector') is not installed on this server: measuring quiver alone")
    args.out.mkdir(parents=True, exist_ok=True)
    results, versions = [], {}
    with tempfile.TemporaryDirectory(prefix="quiver-bench-") as tmp:
        work = pathlib.Path(tmp)
        for name in names:
            data = ds.Dataset(name, args.cache)
            for k in ("all", "cat10", "cat100"):
                data.ground_truth(k)
            for r in bench_dataset(server, contenders, data, args, work):
                r.update(dataset=name, rows=len(data.base), metric=data.metric)
                versions[r["contender"]] = r["version"]
                results.append(r)
            # keep what is measured so far if a later dataset fails
            (args.out / "partial.json").write_text(json.dumps(results, indent=1))
    print(report(results, environment(server, versions, args.seconds, args.rounds), args.out))
    (args.out / "partial.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
