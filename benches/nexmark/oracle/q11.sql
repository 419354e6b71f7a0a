-- Nexmark Q11 asked of the whole tables at once (the oracle).
WITH marked AS (
   SELECT bidder, CAST(date_time AS BIGINT) AS t,
          CASE WHEN CAST(date_time AS BIGINT) - lag(CAST(date_time AS BIGINT)) OVER (PARTITION BY bidder ORDER BY date_time) < 10000 THEN 0 ELSE 1 END AS fresh
   FROM bid),
numbered AS (
   SELECT bidder, t, sum(fresh) OVER (PARTITION BY bidder ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS sid
   FROM marked)
SELECT bidder, count(*) AS bid_count, to_timestamp_millis(min(t)) AS starttime,
       to_timestamp_millis(max(t) + 10000) AS endtime
FROM numbered GROUP BY bidder, sid
