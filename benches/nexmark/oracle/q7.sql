-- Nexmark Q7 asked of the whole tables at once (the oracle).
WITH ends AS (
   SELECT (CAST(date_time AS BIGINT) / 10000) * 10000 + 10000 AS we, price FROM bid),
best AS (SELECT we, max(price) AS maxprice FROM ends GROUP BY we)
SELECT b.auction, b.price, b.bidder, b.date_time
FROM bid b JOIN best m ON b.price = m.maxprice
WHERE CAST(b.date_time AS BIGINT) BETWEEN m.we - 10000 AND m.we
