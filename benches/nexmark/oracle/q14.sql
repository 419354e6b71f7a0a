-- Nexmark Q14 asked of the whole tables at once (the oracle).
SELECT auction, bidder, 0.908 * price AS price,
   CASE WHEN date_part('hour', date_time) BETWEEN 8 AND 18 THEN 'dayTime'
        WHEN date_part('hour', date_time) <= 6 OR date_part('hour', date_time) >= 20 THEN 'nightTime'
        ELSE 'otherTime' END AS bidtimetype,
   date_time, extra,
   length(url) - length(replace(url, 'c', '')) AS c_counts
FROM bid WHERE price * 0.908 > 1000000 AND price * 0.908 < 50000000
