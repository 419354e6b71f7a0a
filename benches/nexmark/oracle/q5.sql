-- Nexmark Q5 asked of the whole tables at once (the oracle).
WITH hopped AS (
   SELECT b.auction, (CAST(b.date_time AS BIGINT) / 2000) * 2000 - o.i * 2000 AS ws
   FROM bid b CROSS JOIN (VALUES (0), (1), (2), (3), (4)) AS o(i)),
counts AS (SELECT auction, ws, count(*) AS num FROM hopped GROUP BY auction, ws),
best AS (SELECT ws, max(num) AS maxn FROM counts GROUP BY ws)
SELECT c.auction, c.num FROM counts c JOIN best m ON c.ws = m.ws WHERE c.num >= m.maxn
