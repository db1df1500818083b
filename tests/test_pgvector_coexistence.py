"""quiver in shared_preload_libraries never breaks pgvector: both libraries
use the setting names hnsw.ef_search, hnsw.iterative_scan, ... and Postgres
refuses a second definition of a name. A preloaded quiver defines them in a
backend only when its hnsw is first used there; a SET made earlier is taken
over. The pgvector half runs where pgvector is installed on the server and
is skipped, saying so, elsewhere."""
import os
import pathlib
import subprocess

import psycopg
import pytest

from cluster import Cluster, PG_BIN

PORT = 28839
EXT_DIR = pathlib.Path(subprocess.run([str(PG_BIN / "pg_config"), "--sharedir"], capture_output=True,
                                      text=True, check=True).stdout.strip()) / "extension"


def pgvector_installed() -> bool:
    control = EXT_DIR / "vector.control"
    return control.exists() and "install_as_vector" not in control.read_text()


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(PORT, "coexist").init("shared_preload_libraries = 'quiver'\n").start()
    try:
        with c.connect() as conn:
            conn.execute("CREATE DATABASE q")
            conn.execute("CREATE DATABASE pgv")
        with psycopg.connect(c.dsn("q"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION quiver")
            conn.execute("CREATE TABLE t (id int, v vector(3))")
            conn.execute("INSERT INTO t SELECT i, ARRAY[i, 2 * i, 1]::real[] FROM generate_series(1, 50) i")
            conn.execute("CREATE INDEX ON t USING hnsw (v vector_l2_ops)")
        yield c
    finally:
        c.destroy()


def count_through_index(conn) -> int:
    conn.execute("SET enable_seqscan = off")
    return conn.execute("SELECT count(*) FROM (SELECT id FROM t ORDER BY v <-> '[1,1,1]' LIMIT 50) s").fetchone()[0]


def test_a_set_before_first_use_is_taken_over(cluster):
    with psycopg.connect(cluster.dsn("q"), autocommit=True) as conn:
        conn.execute("SET hnsw.ef_search = 7")  # before quiver's hnsw ran in this backend
        assert count_through_index(conn) == 7
        assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("7",)
        # now defined by quiver: validated, and the prefix is reserved
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="0 is outside the valid range"):
            conn.execute("SET hnsw.ef_search = 0")
        with pytest.raises(psycopg.errors.InvalidName, match='invalid configuration parameter name "hnsw.ef_serch"'):
            conn.execute("SET hnsw.ef_serch = 5")
        conn.execute("SET hnsw.scan_mem_multiplier = 2")


def test_alter_database_setting_applies(cluster):
    with psycopg.connect(cluster.dsn("q"), autocommit=True) as conn:
        conn.execute("ALTER DATABASE q SET hnsw.ef_search = 9")
    try:
        with psycopg.connect(cluster.dsn("q"), autocommit=True) as conn:
            assert count_through_index(conn) == 9
    finally:
        with psycopg.connect(cluster.dsn("q"), autocommit=True) as conn:
            conn.execute("ALTER DATABASE q RESET hnsw.ef_search")


@pytest.mark.skipif(not pgvector_installed(), reason="pgvector is not installed on this server")
def test_pgvector_database_beside_preloaded_quiver(cluster, tmp_path):
    with psycopg.connect(cluster.dsn("pgv"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
        assert conn.execute("SELECT probin FROM pg_proc WHERE proname = 'vector_in'").fetchone()[0] == "$libdir/vector"
        conn.execute("CREATE TABLE t (id int, v vector(3))")
        conn.execute("INSERT INTO t SELECT i, ARRAY[i, 2 * i, 1]::real[] FROM generate_series(1, 50) i")
        conn.execute("CREATE INDEX ON t USING hnsw (v vector_l2_ops)")
        conn.execute("SET hnsw.ef_search = 11")
        assert count_through_index(conn) == 11  # pgvector's scan, pgvector's setting
    dump = tmp_path / "pgv.sql"
    out = subprocess.run([str(PG_BIN / "pg_dump"), "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres",
                          "-f", str(dump), "pgv"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "CREATE EXTENSION IF NOT EXISTS vector" in dump.read_text()
    # the quiver database beside it still counts its searches
    with psycopg.connect(cluster.dsn("q"), autocommit=True) as conn:
        before = conn.execute("SELECT coalesce(sum(searches), 0) FROM quiver.search_stats").fetchone()[0]
        count_through_index(conn)
        after = conn.execute("SELECT coalesce(sum(searches), 0) FROM quiver.search_stats").fetchone()[0]
        assert after == before + 1
