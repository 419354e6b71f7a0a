-- Nexmark Q4 asked of the whole tables at once (the oracle).
SELECT Q.category, avg(Q.final) AS avg_final
FROM (
    SELECT max(B.price) AS final, A.category
    FROM auction A, bid B
    WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
    GROUP BY A.id, A.category
) Q
GROUP BY Q.category
