#!/usr/bin/env python3
"""Snapshot benchmark on WordNet-MiniLM 100k: creating a snapshot against a
COPY TO of the same rows, and restoring one against loading the rows with
COPY FROM plus CREATE INDEX. Uses the benchmark cluster (bench/bench.sh
starts it) and its dataset cache:
    .build/venv/bin/python bench/snapshot.py [--port 28817]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import datasets as ds  # noqa: E402
import run  # noqa: E402


def settle(c):
    """A checkpoint, then the kernel's dirty pages written out: each timed
    step starts with nothing of the step before still being written (the
    dump files COPY TO leaves in the page cache would otherwise be written
    back during a later step and slow its WAL flushes)."""
    c.execute("CHECKPOINT")
    os.sync()


def timed(c, sql, args=None):
    start = time.perf_counter()
    row = c.execute(sql, args).fetchone() if sql.lstrip().upper().startswith("SELECT") else c.execute(sql, args)
    return time.perf_counter() - start, row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=28817)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cache", type=pathlib.Path,
                   default=pathlib.Path(__file__).resolve().parent.parent / ".build" / "bench")
    args = p.parse_args()
    data = ds.Dataset("wordnet-minilm-384", args.cache)
    server = run.Server("127.0.0.1", args.port, "postgres")
    db = "bench_snapshot"
    run.load(server, db, "quiver", data)
    dump = "/var/tmp/quiver-bench-snapshot.copy"
    with server.connect(db) as c:
        c.execute("SET maintenance_work_mem = '1GB'")
        c.execute("SET max_parallel_maintenance_workers = 1")
        c.execute(f"SELECT quiver.create_collection('docs', {data.dim})")
        c.execute("DROP INDEX docs_embedding_idx")
        c.execute("INSERT INTO docs (id, embedding, payload) "
                  "SELECT id, embedding, jsonb_build_object('cat', cat10) FROM items")
        c.execute("CREATE INDEX docs_embedding_idx ON docs USING hnsw (embedding vector_cosine_ops)")
        c.execute("VACUUM ANALYZE docs")
        for (name,) in c.execute("SELECT name FROM quiver.list_snapshots('docs')").fetchall():
            c.execute("SELECT quiver.delete_snapshot(%s)", (name,))
        # Timings on this machine vary by 2x from one run to the next (disk
        # writes): every step runs in each of `rounds` rounds, from a
        # checkpoint and a sync (so none pays for the dirty buffers and WAL of the one
        # before), and the medians are reported.
        bin_dump = dump + ".bin"
        times: dict[str, list[float]] = {k: [] for k in
                                         ("copy_to", "snapshot", "copy_from", "copy_from_binary", "build", "restore")}
        snap = None
        for r in range(args.rounds):
            for t in ("plain", "plain_bin", "docs_restored"):
                c.execute(f"DROP TABLE IF EXISTS {t}")
            c.execute("DELETE FROM quiver.collection_catalog WHERE name = 'docs_restored'")
            if snap:
                c.execute("SELECT quiver.delete_snapshot(%s)", (snap[0],))
            settle(c)
            times["copy_to"].append(timed(c, f"COPY (SELECT id, embedding, payload FROM docs) TO '{dump}'")[0])
            settle(c)
            t, snap = timed(c, "SELECT name, size FROM quiver.create_snapshot('docs')")
            times["snapshot"].append(t)
            c.execute(f"COPY (SELECT id, embedding, payload FROM docs) TO '{bin_dump}' WITH (FORMAT binary)")
            for t in ("plain", "plain_bin"):
                c.execute(f"CREATE TABLE {t} (id bigint PRIMARY KEY, embedding vector({data.dim}), payload jsonb)")
            settle(c)
            times["copy_from"].append(timed(c, f"COPY plain FROM '{dump}'")[0])
            settle(c)
            times["copy_from_binary"].append(timed(c, f"COPY plain_bin FROM '{bin_dump}' WITH (FORMAT binary)")[0])
            settle(c)
            times["build"].append(timed(c, "CREATE INDEX ON plain USING hnsw (embedding vector_cosine_ops)")[0])
            settle(c)
            times["restore"].append(timed(c, "SELECT quiver.restore_snapshot(%s, 'docs_restored')", (snap[0],))[0])
            run.log("round " + str(r + 1) + ": " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
        med = {k: statistics.median(v) for k, v in times.items()}
        run.log(f"medians of {args.rounds}: COPY TO {med['copy_to']:.2f}s; create_snapshot {med['snapshot']:.2f}s "
                f"({snap[1] / 2**20:.0f} MB); ratio {med['snapshot'] / med['copy_to']:.2f}x")
        load_build = med["copy_from"] + med["build"]
        run.log(f"COPY FROM {med['copy_from']:.2f}s + CREATE INDEX {med['build']:.2f}s = {load_build:.2f}s; "
                f"restore_snapshot {med['restore']:.2f}s; ratio {load_build / med['restore']:.2f}x")
        bin_build = med["copy_from_binary"] + med["build"]
        run.log(f"binary COPY FROM {med['copy_from_binary']:.2f}s + CREATE INDEX = {bin_build:.2f}s; "
                f"ratio {bin_build / med['restore']:.2f}x")
        # the restored index holds the original's graph: the same answers at a small beam
        c.execute("SET hnsw.ef_search = 40")
        same = 0
        for (q,) in c.execute("SELECT embedding::text FROM queries ORDER BY id LIMIT 200").fetchall():
            a, b = (c.execute(f"SELECT id FROM {t} ORDER BY embedding <=> %s::vector LIMIT 10", (q,),
                              prepare=False).fetchall() for t in ("docs", "docs_restored"))
            same += a == b
        run.log(f"restored index: identical top 10 for {same} of 200 queries at ef_search 40")
        pathlib.Path(bin_dump).unlink(missing_ok=True)
        c.execute("SELECT quiver.delete_snapshot(%s)", (snap[0],))
    pathlib.Path(dump).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
