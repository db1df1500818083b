#!/usr/bin/env python3
"""Snapshot benchmark on WordNet-MiniLM 100k: creating a snapshot against a
COPY TO of the same rows, and restoring one against loading the rows with
COPY FROM plus CREATE INDEX. Uses the benchmark cluster (bench/bench.sh
starts it) and its dataset cache:
    .build/venv/bin/python bench/snapshot.py [--port 28817]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import datasets as ds  # noqa: E402
import run  # noqa: E402


def timed(c, sql, args=None):
    start = time.perf_counter()
    row = c.execute(sql, args).fetchone() if sql.lstrip().upper().startswith("SELECT") else c.execute(sql, args)
    return time.perf_counter() - start, row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=28817)
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
        t_copy_to, _ = timed(c, f"COPY (SELECT id, embedding, payload FROM docs) TO '{dump}'")
        t_snap, snap = timed(c, "SELECT name, size FROM quiver.create_snapshot('docs')")
        run.log(f"COPY TO {t_copy_to:.2f}s; create_snapshot {t_snap:.2f}s ({snap[1] / 2**20:.0f} MB); "
                f"ratio {t_snap / t_copy_to:.2f}x")
        c.execute("CREATE TABLE plain (id bigint PRIMARY KEY, embedding vector(%s), payload jsonb)" % data.dim)
        t_load, _ = timed(c, f"COPY plain FROM '{dump}'")
        t_build, _ = timed(c, "CREATE INDEX ON plain USING hnsw (embedding vector_cosine_ops)")
        t_restore, _ = timed(c, "SELECT quiver.restore_snapshot(%s, 'docs_restored')", (snap[0],))
        run.log(f"COPY FROM {t_load:.2f}s + CREATE INDEX {t_build:.2f}s = {t_load + t_build:.2f}s; "
                f"restore_snapshot {t_restore:.2f}s; ratio {(t_load + t_build) / t_restore:.2f}x")
        c.execute("SELECT quiver.delete_snapshot(%s)", (snap[0],))
    pathlib.Path(dump).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
