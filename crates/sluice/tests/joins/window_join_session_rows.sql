-- Each bid with its bidder's session (bids less than 10 seconds apart): the bid's own
-- row, straight from SESSION(…), joined on the session's bounds to that session's count
-- and top price.
INSERT INTO nexmark_out
SELECT R.auction, R.bidder, R.price, R.window_start, R.window_end, S.bids, S.top
FROM SESSION(bid, date_time, INTERVAL '10' SECOND) R
JOIN (
    SELECT bidder, window_start, window_end, count(*) AS bids, max(price) AS top
    FROM SESSION(bid, date_time, INTERVAL '10' SECOND)
    GROUP BY bidder, window_start, window_end
) S ON R.bidder = S.bidder AND R.window_start = S.window_start AND R.window_end = S.window_end;
