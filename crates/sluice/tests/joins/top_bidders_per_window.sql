-- A top N per window: the three busiest bidders of each 10-second window (ROW_NUMBER()
-- partitioned by the window over a window aggregate): append-only, each window's three
-- put out when it closes.
INSERT INTO nexmark_out
SELECT window_start, bidder, bids, rn
FROM (
    SELECT window_start, window_end, bidder, bids,
           ROW_NUMBER() OVER (PARTITION BY window_start, window_end ORDER BY bids DESC, bidder ASC) AS rn
    FROM (
        SELECT window_start, window_end, bidder, count(*) AS bids
        FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)
        GROUP BY window_start, window_end, bidder
    )
)
WHERE rn <= 3;
