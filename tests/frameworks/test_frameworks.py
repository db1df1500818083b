"""The frameworks people build on pgvector, from PyPI, against quiver
installed under pgvector's extension name (scripts/install_as_vector.sh).
Each one runs its own `CREATE EXTENSION IF NOT EXISTS vector`, creates its
tables and indexes, and must find the nearest document exactly as a brute
force over the same fake, deterministic embeddings does.

Needs QUIVER_TEST_PORT (a running cluster); skipped, with the reason, when
the server's `vector` extension is pgvector's own rather than quiver's.
"""
import asyncio
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import psycopg
import pytest

PORT = os.environ["QUIVER_TEST_PORT"]
EXT_DIR = pathlib.Path(subprocess.run(["/usr/lib/postgresql/15/bin/pg_config", "--sharedir"],
                                      capture_output=True, text=True, check=True).stdout.strip()) / "extension"
MARKER = "installed by quiver's scripts/install_as_vector.sh"

pytestmark = pytest.mark.skipif(
    not (EXT_DIR / "vector.control").exists() or MARKER not in (EXT_DIR / "vector.control").read_text(),
    reason="the server's vector extension is not quiver's (run scripts/install_as_vector.sh on a server without pgvector)")

DOCS = ["the cat sat on the mat", "quantum chromodynamics", "a dog chased the cat",
        "postgres stores rows in pages", "vectors live in tables", "hnsw is a graph index"]
DIM = 16


def embed(text: str) -> list[float]:
    """A deterministic embedding: no model, the same vector for the same text."""
    rng = np.random.default_rng(abs(hash_text(text)))
    return rng.standard_normal(DIM).astype(np.float32).tolist()


def hash_text(text: str) -> int:
    h = 1469598103934665603
    for b in text.encode():
        h = ((h ^ b) * 1099511628211) % (1 << 63)
    return h


def nearest_by_cosine(query: str) -> str:
    q = np.array(embed(query))
    def cos(d):
        v = np.array(embed(d))
        return 1 - q @ v / (np.linalg.norm(q) * np.linalg.norm(v))
    return min(DOCS, key=cos)


@pytest.fixture()
def dbname():
    name = "fw_" + os.urandom(4).hex()
    with psycopg.connect(f"host=127.0.0.1 port={PORT} user=postgres dbname=postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    yield name
    with psycopg.connect(f"host=127.0.0.1 port={PORT} user=postgres dbname=postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def assert_quiver_is_vector(dbname):
    with psycopg.connect(f"host=127.0.0.1 port={PORT} user=postgres dbname={dbname}") as conn:
        ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        assert ext == ("0.8.6",)
        assert conn.execute("SELECT quiver.library_version()").fetchone()[0]


class FakeEmbeddings:
    """LangChain's Embeddings interface over `embed`."""
    def embed_documents(self, texts):
        return [embed(t) for t in texts]

    def embed_query(self, text):
        return embed(text)

    async def aembed_documents(self, texts):
        return self.embed_documents(texts)

    async def aembed_query(self, text):
        return self.embed_query(text)


def langchain_embeddings():
    from langchain_core.embeddings import Embeddings
    return type("Fake", (FakeEmbeddings, Embeddings), {})()


def test_langchain_pgvector_with_defaults(dbname):
    from langchain_postgres import PGVector
    store = PGVector(embeddings=langchain_embeddings(), collection_name="docs",
                     connection=f"postgresql+psycopg://postgres@127.0.0.1:{PORT}/{dbname}", use_jsonb=True)
    store.add_texts(DOCS, metadatas=[{"i": i} for i in range(len(DOCS))])
    for query in ["cat on a mat", "graph index", "rows and pages"]:
        hits = store.similarity_search(query, k=1)
        assert [h.page_content for h in hits] == [nearest_by_cosine(query)]
    filtered = store.similarity_search("cat", k=10, filter={"i": {"$in": [1, 2]}})
    assert sorted(h.metadata["i"] for h in filtered) == [1, 2]
    assert_quiver_is_vector(dbname)


def test_langchain_pgvectorstore_with_pgengine(dbname):
    from langchain_postgres import PGEngine, PGVectorStore
    from langchain_postgres.v2.indexes import HNSWIndex
    engine = PGEngine.from_connection_string(url=f"postgresql+psycopg://postgres@127.0.0.1:{PORT}/{dbname}")
    engine.init_vectorstore_table(table_name="docs", vector_size=DIM)
    store = PGVectorStore.create_sync(engine, embedding_service=langchain_embeddings(), table_name="docs")
    store.add_texts(DOCS)
    store.apply_vector_index(HNSWIndex())
    for query in ["a cat", "quantum", "tables of vectors"]:
        hits = store.similarity_search(query, k=1)
        assert [h.page_content for h in hits] == [nearest_by_cosine(query)]
    with psycopg.connect(f"host=127.0.0.1 port={PORT} user=postgres dbname={dbname}") as conn:
        (amname,) = conn.execute("SELECT am.amname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                 "JOIN pg_am am ON am.oid = c.relam WHERE i.indrelid = 'docs'::regclass "
                                 "AND am.amname <> 'btree'").fetchone()
        assert amname == "hnsw"
    assert_quiver_is_vector(dbname)


def test_llamaindex_pgvectorstore(dbname):
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.postgres import PGVectorStore
    store = PGVectorStore.from_params(host="127.0.0.1", port=PORT, database=dbname, user="postgres",
                                      password="", table_name="docs", embed_dim=DIM,
                                      hnsw_kwargs={"hnsw_m": 16, "hnsw_ef_construction": 64,
                                                   "hnsw_ef_search": 40, "hnsw_dist_method": "vector_cosine_ops"})
    store.add([TextNode(text=d, embedding=embed(d)) for d in DOCS])
    for query in ["dog and cat", "graph index"]:
        result = store.query(VectorStoreQuery(query_embedding=embed(query), similarity_top_k=1))
        assert [n.text for n in result.nodes] == [nearest_by_cosine(query)]
    assert_quiver_is_vector(dbname)


def test_django_migration_with_vector_extension(dbname, tmp_path):
    """A Django project whose first migration is pgvector's VectorExtension()."""
    app = tmp_path / "docsapp"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    (app / "models.py").write_text(textwrap.dedent(f"""
        from django.db import models
        from pgvector.django import VectorField, HnswIndex

        class Doc(models.Model):
            text = models.TextField()
            embedding = VectorField(dimensions={DIM})

            class Meta:
                indexes = [HnswIndex(name="doc_embedding_idx", fields=["embedding"], m=16,
                                     ef_construction=64, opclasses=["vector_cosine_ops"])]
    """))
    (app / "migrations" / "0001_initial.py").write_text(textwrap.dedent(f"""
        from django.db import migrations, models
        import pgvector.django

        class Migration(migrations.Migration):
            initial = True
            dependencies = []
            operations = [
                pgvector.django.VectorExtension(),
                migrations.CreateModel(name="Doc", fields=[
                    ("id", models.BigAutoField(primary_key=True, serialize=False)),
                    ("text", models.TextField()),
                    ("embedding", pgvector.django.VectorField(dimensions={DIM})),
                ]),
                migrations.AddIndex(model_name="doc", index=pgvector.django.HnswIndex(
                    name="doc_embedding_idx", fields=["embedding"], m=16, ef_construction=64,
                    opclasses=["vector_cosine_ops"])),
            ]
    """))
    script = textwrap.dedent(f"""
        import sys, json
        sys.path.insert(0, {str(tmp_path)!r})
        import django
        from django.conf import settings
        settings.configure(
            DATABASES={{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": {dbname!r},
                                     "USER": "postgres", "HOST": "127.0.0.1", "PORT": {PORT!r}}}}},
            INSTALLED_APPS=["docsapp"], DEFAULT_AUTO_FIELD="django.db.models.BigAutoField")
        django.setup()
        from django.core.management import call_command
        call_command("migrate", verbosity=0)
        from docsapp.models import Doc
        from pgvector.django import CosineDistance
        for d, e in json.loads(sys.argv[1]).items():
            Doc.objects.create(text=d, embedding=e)
        q = json.loads(sys.argv[2])
        print(Doc.objects.order_by(CosineDistance("embedding", q)).first().text)
    """)
    import json
    query = "a dog"
    out = subprocess.run([sys.executable, "-c", script, json.dumps({d: embed(d) for d in DOCS}),
                          json.dumps(embed(query))], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == nearest_by_cosine(query)
    assert_quiver_is_vector(dbname)


def test_sqlalchemy_asyncpg_register_vector(dbname):
    from pgvector.sqlalchemy import Vector
    from pgvector.asyncpg import register_vector
    from sqlalchemy import Column, Integer, select, text, event
    from sqlalchemy.ext.asyncio import create_async_engine, AsyncSession
    from sqlalchemy.orm import declarative_base

    Base = declarative_base()

    class Item(Base):
        __tablename__ = "items"
        id = Column(Integer, primary_key=True)
        embedding = Column(Vector(DIM))

    async def run():
        engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{PORT}/{dbname}")
        async with engine.begin() as conn:
            await conn.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))

        @event.listens_for(engine.sync_engine, "connect")
        def connect(dbapi_connection, connection_record):
            dbapi_connection.run_async(register_vector)

        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(text("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)"))
        async with AsyncSession(engine) as session:
            session.add_all([Item(id=i, embedding=embed(d)) for i, d in enumerate(DOCS)])
            await session.commit()
            q = embed("postgres pages")
            got = (await session.scalars(select(Item).order_by(Item.embedding.l2_distance(q)).limit(3))).all()
            want = sorted(range(len(DOCS)), key=lambda i: np.linalg.norm(np.array(embed(DOCS[i])) - np.array(q)))[:3]
            assert [i.id for i in got] == want
            assert np.allclose(got[0].embedding, np.array(embed(DOCS[want[0]]), dtype=np.float32))
        await engine.dispose()

    asyncio.run(run())
    assert_quiver_is_vector(dbname)
