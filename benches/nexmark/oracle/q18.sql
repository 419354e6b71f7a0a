-- Nexmark Q18 asked of the whole tables at once (the oracle).
SELECT auction, bidder, price, channel, url, date_time
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY bidder, auction ORDER BY date_time DESC, price DESC, url DESC) AS rank_number
    FROM bid
)
WHERE rank_number <= 1
