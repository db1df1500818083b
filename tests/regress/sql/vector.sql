-- The vector type: text I/O, typmod, every function and operator.
SELECT '[1,2,3]'::vector;
SELECT '  [ 1 , -2.5e1 ,+.5 ]  '::vector;
SELECT '[1.23456789,0.1,1e-45,3.4e38,-0,123456,1234567]'::vector;
SELECT '[1,2,3]'::vector(3);
SELECT '[1,2,3]'::vector <=> '[3,2,1]' AS issue_example;
SELECT l2_distance('[0,0]'::vector, '[3,4]'), '[0,0]'::vector <-> '[3,4]';
SELECT inner_product('[1,2]'::vector, '[3,4]'), '[1,2]'::vector <#> '[3,4]';
SELECT cosine_distance('[1,1]'::vector, '[-1,-1]'), '[1,0]'::vector <=> '[0,1]';
SELECT cosine_distance('[0,0]'::vector, '[1,1]') AS zero_vector_is_nan;
SELECT l1_distance('[1,2]'::vector, '[3,5]'), '[1,2]'::vector <+> '[3,5]';
SELECT vector_dims('[1,2,3]'::vector), vector_norm('[3,4]');
SELECT l2_normalize('[3,4]'::vector), l2_normalize('[0,0]'::vector);
SELECT subvector('[1,2,3,4,5]'::vector, 2, 3), subvector('[1,2,3,4,5]'::vector, 4, 100);
SELECT binary_quantize('[1,-1,0,2,0.5,-3,1,1,7]'::vector);
SELECT '[1,2]'::vector + '[3,4]', '[1,2]'::vector - '[3,5]', '[1,2]'::vector * '[3,4]';
SELECT '[1,2]'::vector || '[3]';
SELECT '[1,2]'::vector < '[1,3]', '[1,2]'::vector <= '[1,2]', '[1,2]'::vector = '[1,2]',
       '[1,2]'::vector <> '[1,2]', '[1,2]'::vector >= '[1,2,0]', '[2]'::vector > '[1,9]';
SELECT vector_cmp('[1,2]', '[1,2,3]'), vector_cmp('[2]', '[1,9]'), vector_cmp('[1]', '[1]');
SELECT v FROM (VALUES ('[2]'::vector), ('[1,5]'), ('[1]'), ('[1,5]')) t(v) ORDER BY v;
SELECT DISTINCT v FROM (VALUES ('[1,5]'::vector), ('[1,5]')) t(v);
SELECT vector_l2_squared_distance('[0,0]', '[3,4]'), vector_negative_inner_product('[1,2]', '[3,4]'),
       round(vector_spherical_distance('[1,0]', '[0,1]')::numeric, 6);
SELECT avg(v), sum(v) FROM (VALUES ('[1,2]'::vector), ('[3,6]'), (NULL)) t(v);
SELECT avg(v) IS NULL AS empty_avg_is_null, sum(v) IS NULL AS empty_sum_is_null
FROM (SELECT '[1]'::vector WHERE false) t(v);
-- casts from and to arrays
SELECT ARRAY[1,2,3]::vector, ARRAY[1.5,2.5]::real[]::vector, ARRAY[1.5,2.5]::float8[]::vector,
       ARRAY[1.5,2.5]::numeric[]::vector;
SELECT '[1.5,2]'::vector::real[], '[1.5,2]'::vector::float8[], '[1.5,2]'::vector::numeric[],
       '[1.4,2.6]'::vector::integer[];
SELECT ARRAY[1,2,3]::vector(3);
-- storage: a table round trip, typmod and a btree index
CREATE TABLE vt (id int PRIMARY KEY, v vector(3));
INSERT INTO vt VALUES (1, '[1,2,3]'), (2, '[0,0,0]'), (3, NULL), (4, ARRAY[3,2,1]);
SELECT id, v, v <-> '[1,1,1]' AS d FROM vt ORDER BY v <-> '[1,1,1]' NULLS LAST, id;
CREATE INDEX ON vt (v);
SET enable_seqscan = off;
SELECT id FROM vt WHERE v = '[3,2,1]';
RESET enable_seqscan;
-- large values go through TOAST and come back intact
CREATE TABLE big (v vector(16000));
INSERT INTO big SELECT array_fill(0.5::real, ARRAY[16000])::vector;
SELECT vector_dims(v), vector_norm(v) = sqrt(16000 * 0.25) FROM big;
DROP TABLE vt, big;
