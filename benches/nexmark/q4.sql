-- Q4: average closing price per category: each auction's highest bid while it was
-- open (a regular join bounded by columns, then a GROUP BY without a window: an
-- updating result), averaged per category (an aggregate over an updating result, which
-- takes back an auction's old maximum when it rises).
INSERT INTO nexmark_out
SELECT Q.category, avg(Q.final) AS avg_final
FROM (
    SELECT max(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category;
