"""ALTER EXTENSION quiver UPDATE from every earlier release (sql/releases)
through the upgrade scripts (sql/upgrades): the data and indexes of the old
install survive, the upgraded database has exactly the objects a fresh
install has, and quiver's SQL regression files then pass in it."""
import os
import pathlib
import re
import subprocess
import tempfile

import psycopg
import pytest

from cluster import PG_BIN

REPO = pathlib.Path(__file__).resolve().parent.parent
PORT = os.environ.get("QUIVER_TEST_PORT", "")
RELEASES = sorted(p.name[len("quiver--"):-len(".sql")] for p in (REPO / "sql/releases").glob("quiver--*.sql"))
CURRENT = re.search(r'^version = "([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M).group(1)

# Each member object of the extension with what defines it, so that an
# upgrade script that forgets a change (a function's body or volatility, a
# view's query, a column, a setting's default) shows as a difference.
MEMBERS = """
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) ||
       coalesce(' = ' || (SELECT concat_ws(' ', pg_get_function_result(p.oid), p.prosrc, p.probin IS NOT NULL,
                                           p.provolatile, p.proisstrict, p.proparallel, p.prosecdef, p.proconfig::text)
                          FROM pg_proc p WHERE d.classid = 'pg_proc'::regclass AND p.oid = d.objid), '')
       || coalesce(' = ' || (SELECT pg_get_viewdef(c.oid) FROM pg_class c
                          WHERE d.classid = 'pg_class'::regclass AND c.oid = d.objid AND c.relkind = 'v'), '')
       || coalesce(' = ' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                          WHERE d.classid = 'pg_class'::regclass AND c.oid = d.objid AND c.relkind IN ('r', 'p')
                            AND a.attnum > 0 AND NOT a.attisdropped), '')
FROM pg_depend d JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
WHERE e.extname = 'quiver' AND d.deptype = 'e'
ORDER BY 1
"""


def connect(dbname):
    return psycopg.connect(f"host=127.0.0.1 port={PORT} user=postgres dbname={dbname}", autocommit=True)


@pytest.fixture()
def admin():
    if not PORT:
        pytest.skip("QUIVER_TEST_PORT is not set (scripts/test.sh sets it)")
    with connect("postgres") as a:
        yield a


def fill(c):
    """An old install at work: vector, halfvec and bit columns with hnsw and
    ivfflat indexes, a collection behind an alias."""
    c.execute("CREATE SCHEMA up")
    c.execute("CREATE TABLE up.items (id int PRIMARY KEY, v vector(8), h halfvec(8), b bit(8))")
    c.execute("INSERT INTO up.items SELECT i, ARRAY[sin(i), cos(i), sin(2*i), cos(3*i), i % 7, i % 5, 1, -1], "
              "ARRAY[sin(i), cos(i), sin(2*i), cos(3*i), i % 7, i % 5, 1, -1]::real[]::halfvec, "
              "(i % 256)::bit(8) FROM generate_series(1, 2000) i")
    c.execute("CREATE INDEX up_items_v ON up.items USING hnsw (v vector_cosine_ops)")
    c.execute("CREATE INDEX up_items_h ON up.items USING hnsw (h halfvec_l2_ops) WITH (m = 8)")
    c.execute("CREATE INDEX up_items_b ON up.items USING hnsw (b bit_hamming_ops)")
    c.execute("CREATE INDEX up_items_ivf ON up.items USING ivfflat (v vector_l2_ops) WITH (lists = 10)")
    c.execute("SET search_path = up, public")
    c.execute("SELECT quiver.create_collection('docs', 8)")
    c.execute("INSERT INTO docs (id, embedding) SELECT id, v FROM up.items")
    c.execute("SELECT quiver.create_alias('docs_live', 'docs')")
    c.execute("RESET search_path")


QUERIES = [
    "SELECT id FROM up.items ORDER BY v <=> '[1,0,0,0,1,1,1,-1]' LIMIT 10",
    "SELECT id FROM up.items ORDER BY h <-> '[1,0,0,0,1,1,1,-1]' LIMIT 10",
    "SELECT id FROM up.items ORDER BY b <~> B'10101010', id LIMIT 10",
    "SELECT id FROM up.items ORDER BY v <-> '[1,0,0,0,1,1,1,-1]' LIMIT 10",
    "SELECT id FROM up.docs_live ORDER BY embedding <=> '[0,1,0,0,3,2,1,-1]' LIMIT 10",
]


def answers(c):
    c.execute("SET enable_seqscan = off")
    c.execute("SET ivfflat.probes = 10")
    out = [[r[0] for r in c.execute(q).fetchall()] for q in QUERIES]
    c.execute("RESET enable_seqscan")
    return out


@pytest.mark.parametrize("release", RELEASES)
def test_update_from_an_earlier_release_keeps_data_and_equals_a_fresh_install(admin, release):
    assert release != CURRENT, "sql/releases holds earlier releases only"
    old, fresh = f"upgrade_from_{release.replace('.', '_')}", "upgrade_fresh"
    for d in (old, fresh):
        admin.execute(f"DROP DATABASE IF EXISTS {d} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {d}")
    try:
        with connect(old) as c:
            c.execute(f"CREATE EXTENSION quiver VERSION '{release}'")
            fill(c)
            before = answers(c)
            assert all(len(a) == 10 for a in before)
            c.execute("ALTER EXTENSION quiver UPDATE")
            assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'quiver'").fetchone()[0] == CURRENT
        # a new session loads the library against the upgraded catalog
        with connect(old) as c:
            assert c.execute("SELECT count(*) FROM up.items").fetchone()[0] == 2000
            assert answers(c) == before
            for idx in ("up.up_items_v", "up.up_items_h", "up.up_items_b"):
                chk = c.execute(f"SELECT quiver.index_check('{idx}')").fetchone()[0]
                assert chk["unreachable_live"] == 0 and chk["live"] >= 2000, (idx, chk)
            # the indexes keep taking writes after the update
            c.execute("INSERT INTO up.items VALUES (5000, '[9,9,9,9,9,9,9,9]', '[9,9,9,9,9,9,9,9]', B'11111111')")
            c.execute("SET enable_seqscan = off")
            assert c.execute("SELECT id FROM up.items ORDER BY v <-> '[9,9,9,9,9,9,9,9]' LIMIT 1").fetchone()[0] == 5000
            assert c.execute("SELECT collection_name FROM quiver.aliases WHERE alias_name = 'docs_live'").fetchone()[0] == "docs"
            upgraded = [r[0] for r in c.execute(MEMBERS).fetchall()]
        with connect(fresh) as c:
            c.execute("CREATE EXTENSION quiver")
            installed = [r[0] for r in c.execute(MEMBERS).fetchall()]
        missing = sorted(set(installed) - set(upgraded))
        extra = sorted(set(upgraded) - set(installed))
        assert not missing and not extra, f"upgrade differs from a fresh install: missing {missing[:5]}, extra {extra[:5]}"

        # quiver's regression files pass in the upgraded database (the fill is
        # dropped first: the files list collections and create their own tables)
        with connect(old) as c:
            c.execute("SET search_path = up, public")
            c.execute("SELECT quiver.drop_collection('docs', cascade => true)")
            c.execute("DROP SCHEMA up CASCADE")
        regress = PG_BIN.parent / "lib/pgxs/src/test/regress/pg_regress"
        tests = sorted(p.stem for p in (REPO / "tests/regress/sql").glob("*.sql"))
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([str(regress), "--host=127.0.0.1", f"--port={PORT}", "--user=postgres",
                                f"--inputdir={REPO / 'tests/regress'}", f"--outputdir={out}", "--use-existing",
                                f"--dbname={old}", *tests], capture_output=True, text=True)
            diffs = pathlib.Path(out, "regression.diffs")
            assert r.returncode == 0, (r.stdout[-2000:], diffs.read_text()[:3000] if diffs.exists() else "")
    finally:
        for d in (old, fresh):
            admin.execute(f"DROP DATABASE IF EXISTS {d} WITH (FORCE)")
