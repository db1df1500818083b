-- Distances on bit strings, the output of binary_quantize.
SELECT hamming_distance(B'1010', B'0110'), B'1010' <~> B'0110';
SELECT jaccard_distance(B'1010', B'1110'), B'1010' <%> B'1110';
SELECT B'0000' <%> B'0000' AS jaccard_of_empty_sets;
SELECT binary_quantize('[1,-1,1,-1,1,-1,1,-1,1,1]'::vector) <~> binary_quantize('[1,1,1,1,1,1,1,1,1,1]'::vector);
SELECT B'101' <~> B'1010';
SELECT B'101' <%> B'1010';
