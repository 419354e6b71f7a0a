-- Deduplication: when each bidder first bid on each auction, by event time
-- (ROW_NUMBER() … = 1 keeps a key's earliest row once the watermark passes it). Among
-- rows of the same time the first to arrive is kept, so only columns that ties share are
-- compared with the oracle.
INSERT INTO nexmark_out
SELECT auction, bidder, date_time
FROM (
    SELECT auction, bidder, price, date_time,
           ROW_NUMBER() OVER (PARTITION BY auction, bidder ORDER BY date_time) AS rn
    FROM bid
)
WHERE rn = 1;
