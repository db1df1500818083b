#!/usr/bin/env bash
# Command 1 of the README: set up, build and install quiver, start a local
# Postgres 15 on 127.0.0.1:${QUIVER_DEMO_PORT:-28815}, create the extension
# in a fresh `quiver_demo` database and run a short demo. Running it again
# reuses (and restarts) the cluster and recreates the demo database.
source "$(dirname "$0")/lib.sh"
PORT="${QUIVER_DEMO_PORT:-28815}"

"${REPO}/scripts/setup.sh"
install_quiver
start_cluster demo-pg "${PORT}" preload

PSQL=("${PG_BIN}/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${PORT}" -U postgres)
"${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS quiver_demo" -c "CREATE DATABASE quiver_demo"

log "demo"
"${PSQL[@]}" -d quiver_demo -e <<'SQL'
CREATE EXTENSION quiver;
SELECT '[1,2,3]'::vector <=> '[3,2,1]' AS cosine_distance;
CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3));
INSERT INTO items (embedding) VALUES ('[1,2,3]'), ('[4,5,6]'), ('[1,1,1]'), ('[-1,0,2]');
SELECT id, embedding, embedding <-> '[3,1,2]' AS l2 FROM items ORDER BY embedding <-> '[3,1,2]' LIMIT 3;
SELECT avg(embedding) AS centroid, binary_quantize(avg(embedding)) AS code FROM items;
-- blue/green: the application queries an alias; v2 has another dimension
SELECT quiver.create_collection('docs_v1', 3);
INSERT INTO docs_v1 SELECT i, array[i, i % 7, 1]::real[]::vector, jsonb_build_object('n', i) FROM generate_series(1, 1000) i;
SELECT quiver.create_alias('docs', 'docs_v1');
SELECT id, payload FROM docs ORDER BY embedding <=> '[3,1,1]' LIMIT 3;
SELECT quiver.create_collection('docs_v2', 4, distance => 'l2', shards => 2);
INSERT INTO docs_v2 SELECT i, array[i, i % 5, 1, 0]::real[]::vector, NULL FROM generate_series(1, 1000) i;
SELECT quiver.switch_alias('docs', 'docs_v2');
SELECT id FROM docs ORDER BY embedding <-> '[3,1,1,0]' LIMIT 3;
-- binary quantization: 1-bit codes in the index, candidates rescored from the table
SELECT quiver.create_collection('docs_bq', 64, quantization => 'binary');
INSERT INTO docs_bq SELECT i, (SELECT array_agg(sin(i * j * 0.01))::real[] FROM generate_series(1, 64) j)::vector, NULL
FROM generate_series(1, 2000) i;
SELECT id FROM docs_bq ORDER BY embedding <=> (SELECT embedding FROM docs_bq WHERE id = 42) LIMIT 3;
SELECT quantization, dimensions, vector_bytes, vectors, pg_size_pretty(index_size) AS index_size
FROM quiver.index_stats('docs_bq_embedding_idx');
SELECT name, vector_size, distance, quantization, shards, points_count, aliases, status FROM quiver.collections;
-- snapshots: one checksummed file per collection, restored under a new name
SELECT name AS snapshot, size, rows FROM quiver.create_snapshot('docs_v1') \gset
SELECT name, collection, size, rows FROM quiver.list_snapshots('docs_v1');
SELECT quiver.restore_snapshot(:'snapshot', 'docs_v1_restored');
SELECT count(*) AS restored_rows FROM docs_v1_restored;
SELECT quiver.delete_snapshot(:'snapshot');
-- metrics: quiver is preloaded here, so index scans are counted in shared memory
SELECT index, searches, rows_returned, p50_seconds, p99_seconds FROM quiver.search_stats;
SELECT left(quiver.prometheus_metrics(), 400) AS prometheus_excerpt;
SQL

cat <<MSG

quiver is running on Postgres ${PG_MAJOR} at 127.0.0.1:${PORT} (data: ${CLUSTER_DIR}/data).
Connect with:
    psql -h 127.0.0.1 -p ${PORT} -U postgres quiver_demo
Stop it with:
    sudo -u postgres ${PG_BIN}/pg_ctl -D ${CLUSTER_DIR}/data stop
MSG
