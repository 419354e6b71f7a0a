-- A WITH clause, and a window over an earlier window's output time: bids per auction
-- per 10 s, then per 30 s window (by the 10-second windows' end) the busiest count.
INSERT INTO nexmark_out
WITH per10 AS (
    SELECT auction, window_end AS ten_end, count(*) AS n
    FROM TUMBLE(bid, date_time, INTERVAL '10' SECOND)
    GROUP BY auction, window_start, window_end
)
SELECT window_start, auction, sum(n) AS bids, max(n) AS busiest
FROM TUMBLE(per10, ten_end, INTERVAL '30' SECOND)
GROUP BY window_start, window_end, auction;
