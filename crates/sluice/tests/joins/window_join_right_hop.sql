-- Window join over HOP windows, RIGHT outer: per sliding window, people with their
-- auctions, and every auction seller even without a signup in that window.
INSERT INTO nexmark_out
SELECT P.id, A.seller, A.window_start, A.n
FROM (
    SELECT id, window_start, window_end FROM HOP(person, date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND)
    GROUP BY id, window_start, window_end
) P
RIGHT JOIN (
    SELECT seller, window_start, window_end, count(*) AS n
    FROM HOP(auction, date_time, INTERVAL '5' SECOND, INTERVAL '10' SECOND)
    GROUP BY seller, window_start, window_end
) A ON P.id = A.seller AND P.window_start = A.window_start AND P.window_end = A.window_end;
