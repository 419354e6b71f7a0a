-- An outer join without a time bound: every person with each auction they sell, or
-- alone until their first one (an updating result: the padded row goes out at once and
-- is taken back when the first auction comes).
INSERT INTO nexmark_out
SELECT P.id, P.name, A.id AS auction, A.category
FROM person P LEFT JOIN auction A ON P.id = A.seller;
