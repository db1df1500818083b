import os
import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import psycopg  # noqa: E402
import pytest  # noqa: E402

# No server-side prepared statements in any test connection: psycopg
# prepares a query text after 5 runs, and the prepared plan outlives the
# enable_indexscan/enable_seqscan a test sets to compare the index with an
# exact scan of the same text; such a test then compared the index with
# itself (the sparse L2 recall test measured 0.95 this way, 0.60 truly).
_connect = psycopg.connect


def _connect_unprepared(*args, **kwargs):
    kwargs.setdefault("prepare_threshold", None)
    return _connect(*args, **kwargs)


psycopg.connect = _connect_unprepared


@pytest.fixture()
def db():
    """A fresh database with quiver on the shared test cluster."""
    port = os.environ["QUIVER_TEST_PORT"]
    name = "it_" + os.urandom(4).hex()
    admin = psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    conn = psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname={name}", autocommit=True)
    conn.execute("CREATE EXTENSION quiver")
    yield conn
    conn.close()
    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()
