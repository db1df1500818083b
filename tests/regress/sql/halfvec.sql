-- The halfvec type and its conversions to and from vector.
SELECT '[1,2,3]'::halfvec;
SELECT '[1,0.1,65504,-0.00006103515625]'::halfvec;
SELECT '[1,2,3]'::halfvec(3);
SELECT '[1,2,3]'::halfvec <=> '[3,2,1]';
SELECT l2_distance('[0,0]'::halfvec, '[3,4]'), '[0,0]'::halfvec <-> '[3,4]';
SELECT inner_product('[1,2]'::halfvec, '[3,4]'), '[1,2]'::halfvec <#> '[3,4]';
SELECT cosine_distance('[1,1]'::halfvec, '[-1,-1]'), l1_distance('[1,2]'::halfvec, '[3,5]'),
       '[1,2]'::halfvec <+> '[3,5]';
SELECT vector_dims('[1,2,3]'::halfvec), l2_norm('[3,4]'::halfvec), l2_normalize('[3,4]'::halfvec);
SELECT subvector('[1,2,3,4,5]'::halfvec, 2, 3), binary_quantize('[1,-1,2]'::halfvec);
SELECT '[1,2]'::halfvec + '[3,4]', '[1,2]'::halfvec - '[3,5]', '[1,2]'::halfvec * '[3,4]',
       '[1,2]'::halfvec || '[3]';
SELECT '[1,2]'::halfvec < '[1,3]', '[1,2]'::halfvec = '[1,2]', halfvec_cmp('[1]', '[1,0]');
SELECT halfvec_l2_squared_distance('[0,0]', '[3,4]'), halfvec_negative_inner_product('[1,2]', '[3,4]');
SELECT avg(v), sum(v) FROM (VALUES ('[1,2]'::halfvec), ('[3,6]')) t(v);
SELECT ARRAY[1,2]::halfvec, ARRAY[1.5,2]::real[]::halfvec, ARRAY[1.5,2]::float8[]::halfvec,
       ARRAY[1.5,2]::numeric[]::halfvec, '[1.5,2]'::halfvec::real[];
SELECT '[1.5,0.1]'::vector::halfvec, '[1.5,0.1]'::halfvec::vector;
CREATE TABLE ht (v halfvec(2));
INSERT INTO ht VALUES ('[1,2]'::vector);
SELECT v FROM ht;
DROP TABLE ht;
-- errors
SELECT '[70000]'::halfvec;
SELECT '[1e6,1]'::vector::halfvec;
SELECT '[60000]'::halfvec + '[60000]';
SELECT '[1,2]'::halfvec <-> '[1]';
SELECT '[NaN]'::halfvec;
SELECT '[1,2]'::halfvec(3);
SELECT '[]'::halfvec;
