-- sparsevec: pgvector's sparse vector type, its text form, limits and errors.
SELECT '{1:1.5,3:3.5}/5'::sparsevec;
SELECT ' { 3 : 3.5 ,  1  :  1.5  } / 5 '::sparsevec AS unordered_with_spaces;
SELECT '{1:0,2:1}/2'::sparsevec AS zeros_dropped;
SELECT '{}/3'::sparsevec;
SELECT '{1:1.5e38,2:-1.5e-38}/2'::sparsevec;
SELECT '{1:hello,2:1}/2'::sparsevec;
SELECT '{1:NaN,2:1}/2'::sparsevec;
SELECT '{1:Infinity,2:1}/2'::sparsevec;
SELECT '{1:4e38,2:1}/2'::sparsevec;
SELECT '{1:1e-46,2:1}/2'::sparsevec;
SELECT ''::sparsevec;
SELECT '{}'::sparsevec;
SELECT '{1:1,1:2}/2'::sparsevec;
SELECT '{0:1}/2'::sparsevec;
SELECT '{3:1}/2'::sparsevec;
SELECT '{}/0'::sparsevec;
SELECT '{}/1000000001'::sparsevec;
SELECT '{}/1000000000'::sparsevec AS largest_dimension;
SELECT '{}/3 junk'::sparsevec;
SELECT ('{' || string_agg(i || ':1', ',') || '}/16001')::sparsevec FROM generate_series(1, 16001) i;
SELECT length(('{' || string_agg(i || ':1', ',') || '}/16000')::sparsevec::text) AS max_nnz_text_length FROM generate_series(1, 16000) i;

-- typmod
SELECT '{1:1}/3'::sparsevec(3);
SELECT '{1:1}/3'::sparsevec(2);
SELECT '{}/1'::sparsevec(0);
SELECT '{}/1'::sparsevec(1000000001);
CREATE TABLE sv (id int, v sparsevec(3));
INSERT INTO sv VALUES (1, '{1:1,2:2,3:3}/3'), (2, '{}/3'), (3, '{1:1,2:1,3:1}/3'), (4, NULL);
INSERT INTO sv VALUES (5, '{1:1}/4');

-- casts
SELECT '[0,1.5,0,3.5,0]'::vector::sparsevec;
SELECT '[0,1.5,0,3.5,0]'::vector::sparsevec(4);
SELECT '{2:1.5,4:3.5}/5'::sparsevec::vector;
SELECT '{2:1.5,4:3.5}/5'::sparsevec::vector(4);
SELECT '{}/16001'::sparsevec::vector;
SELECT '[0,1.5,0,3.5,0]'::halfvec::sparsevec;
SELECT '{2:1.5,4:3.5}/5'::sparsevec::halfvec;
SELECT '{1:100000}/1'::sparsevec::halfvec;
SELECT ARRAY[1,0,2]::sparsevec, ARRAY[1.5,0,2]::real[]::sparsevec, ARRAY[0,0,2.5]::float8[]::sparsevec, ARRAY[1,0]::numeric[]::sparsevec;
SELECT ARRAY[[1,2]]::sparsevec;
SELECT ARRAY[1,NULL]::sparsevec;
SELECT ARRAY['NaN'::float8, 1]::sparsevec;
SELECT ARRAY[1,0,2]::sparsevec(2);

-- distances, norms, against the dense ones
SELECT l2_distance('{1:1,3:2}/3'::sparsevec, '{2:2,3:1}/3'), l2_distance('[1,0,2]'::vector, '[0,2,1]');
SELECT '{1:1,3:2}/3'::sparsevec <-> '{2:2,3:1}/3';
SELECT inner_product('{1:1,3:2}/3'::sparsevec, '{2:2,3:1}/3'), '{1:1,3:2}/3'::sparsevec <#> '{2:2,3:1}/3';
SELECT cosine_distance('{1:1,2:2}/3'::sparsevec, '{1:2,2:4}/3'), '{1:1,3:2}/3'::sparsevec <=> '{2:2,3:1}/3';
SELECT cosine_distance('{1:1}/3'::sparsevec, '{}/3');
SELECT l1_distance('{1:1,3:2}/3'::sparsevec, '{2:2,3:1}/3'), '{1:1,3:2}/3'::sparsevec <+> '{2:2,3:1}/3';
SELECT l2_distance('{1:1}/3'::sparsevec, '{1:1}/4');
SELECT l2_norm('{1:3,2:4}/2'::sparsevec), l2_norm('{}/2'::sparsevec);
SELECT l2_normalize('{1:3,2:4}/2'::sparsevec), l2_normalize('{}/2'::sparsevec);

-- order and equality as pgvector's, and a btree index on it
SELECT v FROM sv ORDER BY v;
SELECT '{1:1}/2'::sparsevec = '{1:1}/2', '{1:1}/2'::sparsevec < '{1:2}/2', '{}/2'::sparsevec < '{}/3', '{1:-1}/2'::sparsevec < '{}/2';
CREATE INDEX ON sv (v);
SET enable_seqscan = off;
SELECT id FROM sv WHERE v = '{1:1,2:1,3:1}/3';
RESET enable_seqscan;
-- no hnsw or ivfflat support for sparsevec yet: a clear error
CREATE INDEX ON sv USING hnsw (v sparsevec_l2_ops);
DROP TABLE sv;
