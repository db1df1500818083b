import os
import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import psycopg  # noqa: E402
import pytest  # noqa: E402


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
