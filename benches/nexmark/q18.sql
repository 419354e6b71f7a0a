-- Q18: each bidder's last bid on each auction (the last row per key: ROW_NUMBER()
-- ordered by time descending, = 1; an updating result).
INSERT INTO nexmark_out
SELECT auction, bidder, price, channel, url, date_time
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC, price DESC, url DESC) AS rank_number
    FROM bid
)
WHERE rank_number <= 1;
