-- Q11: bids per user session (a session ends after 10 seconds without a bid).
INSERT INTO nexmark_out
SELECT bidder, count(*) AS bid_count, window_start AS starttime, window_end AS endtime
FROM SESSION(bid, date_time, INTERVAL '10' SECOND)
GROUP BY bidder, window_start, window_end;
