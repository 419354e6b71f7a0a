-- Nexmark Q19 asked of the whole tables at once (the oracle).
SELECT auction, bidder, price, date_time, rank_number
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY auction ORDER BY price DESC, date_time ASC, bidder ASC) AS rank_number
    FROM bid
)
WHERE rank_number <= 10
