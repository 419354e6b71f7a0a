-- Window join over SESSION windows: each bidder's bidding sessions (bids less than 10
-- seconds apart) and the same bidder's sessions of bids over 10,000 (sessions of their
-- own), FULL outer on the sessions' bounds: a row has both sides where both saw the same
-- session.
INSERT INTO nexmark_out
SELECT B.bidder, H.bidder AS high_bidder, B.window_start AS b_start, H.window_end AS h_end,
       B.bids, H.high_bids
FROM (
    SELECT bidder, window_start, window_end, count(*) AS bids
    FROM SESSION(bid, date_time, INTERVAL '10' SECOND)
    GROUP BY bidder, window_start, window_end
) B
FULL JOIN (
    SELECT bidder, window_start, window_end, count(*) AS high_bids
    FROM SESSION(bid, date_time, INTERVAL '10' SECOND)
    WHERE price > 1000000
    GROUP BY bidder, window_start, window_end
) H ON B.bidder = H.bidder AND B.window_start = H.window_start AND B.window_end = H.window_end;
