-- Q19: each auction's ten highest bids, with their rank (a top N per key: an updating
-- result; a new high bid moves the others down a rank).
INSERT INTO nexmark_out
SELECT auction, bidder, price, date_time, rank_number
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, date_time ASC, bidder ASC) AS rank_number
    FROM bid
)
WHERE rank_number <= 10;
