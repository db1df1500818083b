"""A pg_dump of a pgvector 0.8.6 database (tests/fixtures, made by pg_dump
from a real pgvector database with vector, halfvec, sparsevec and bit
columns, hnsw and ivfflat indexes and a btree index on sparsevec) restores into quiver
installed as `vector` with exit code 0 and nothing filtered, in plain and
custom format, and the same searches return what they returned on pgvector.
Skipped where the server's `vector` extension is not quiver's."""
import json
import math
import os
import pathlib
import subprocess

import psycopg
import pytest

from cluster import PG_BIN

PORT = os.environ["QUIVER_TEST_PORT"]
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
EXT_DIR = pathlib.Path(subprocess.run([str(PG_BIN / "pg_config"), "--sharedir"], capture_output=True,
                                      text=True, check=True).stdout.strip()) / "extension"

pytestmark = pytest.mark.skipif(
    not (EXT_DIR / "vector.control").exists() or "install_as_vector" not in (EXT_DIR / "vector.control").read_text(),
    reason="the server's vector extension is not quiver's (scripts/install_as_vector.sh)")


def admin(sql):
    with psycopg.connect(f"host=127.0.0.1 port={PORT} user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(sql)


@pytest.fixture()
def target():
    name = "restore_" + os.urandom(4).hex()
    admin(f"CREATE DATABASE {name}")
    yield name
    admin(f"DROP DATABASE {name} WITH (FORCE)")


def restore(fmt, db):
    conn = ["-h", "127.0.0.1", "-p", PORT, "-U", "postgres", "-d", db]
    if fmt == "plain":
        cmd = [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *conn, "-f", str(FIXTURES / "pgvector-0.8.6-dump.sql")]
    else:
        cmd = [str(PG_BIN / "pg_restore"), "--exit-on-error", *conn, str(FIXTURES / "pgvector-0.8.6-dump.custom")]
    return subprocess.run(cmd, capture_output=True, text=True)


@pytest.mark.parametrize("fmt", ["plain", "custom"])
def test_pgvector_dump_restores_and_searches_alike(target, fmt):
    out = restore(fmt, target)
    assert out.returncode == 0, out.stderr
    expected = json.loads((FIXTURES / "pgvector-0.8.6-dump-top10.json").read_text())
    with psycopg.connect(f"host=127.0.0.1 port={PORT} user=postgres dbname={target}", autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM items").fetchone() == (300,)
        lib = c.execute("SELECT quiver.library_version()").fetchone()[0]
        assert lib, "the restored database runs quiver"
        indexes = dict(c.execute("SELECT c.relname, am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
                                 "WHERE c.relkind = 'i' AND c.relname LIKE '%idx%'").fetchall())
        assert indexes == {"items_embedding_idx": "hnsw", "items_half_idx": "hnsw", "items_code_idx": "hnsw",
                           "docs_embedding_idx": "hnsw", "docs_embedding_idx1": "ivfflat"}
        ivf = dict(c.execute("SELECT c.relname, am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
                             "WHERE c.relkind = 'i' AND c.relname LIKE '%ivf'").fetchall())
        assert ivf == {"items_embedding_ivf": "ivfflat", "items_half_ivf": "ivfflat"}
        c.execute("SET enable_seqscan = off")
        c.execute("SET ivfflat.probes = 5")  # every list: exact, as on pgvector
        for name, cases in expected.items():
            for case in cases:
                plan = "\n".join(r[0] for r in c.execute("EXPLAIN " + case["sql"], (case["query"], case["query"])))
                if name != "sparse <->":  # no hnsw on sparsevec: pgvector's ran exact too
                    assert "Index Scan" in plan, (name, plan)
                rows = c.execute(case["sql"], (case["query"], case["query"])).fetchall()
                got_d = [r[1] for r in rows]
                assert len(got_d) == len(case["distances"]), name
                assert all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6) for a, b in zip(got_d, case["distances"])), name
                # ids must agree except among rows at the same distance (bit codes tie often)
                for (gid, gd), eid, ed in zip(rows, case["ids"], case["distances"]):
                    if case["distances"].count(ed) == 1:
                        assert gid == eid, (name, case["query"])
