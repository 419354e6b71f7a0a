-- Window join of two window aggregates: people who signed up and auctions opened, per
-- 10-second window and person, FULL outer (windows with only one side come out too).
INSERT INTO nexmark_out
SELECT P.id AS person, A.seller AS seller, P.window_start AS p_start, A.window_start AS a_start,
       P.n AS people, A.n AS auctions
FROM (
    SELECT id, window_start, window_end, count(*) AS n
    FROM TUMBLE(person, date_time, INTERVAL '10' SECOND)
    GROUP BY id, window_start, window_end
) P
FULL JOIN (
    SELECT seller, window_start, window_end, count(*) AS n
    FROM TUMBLE(auction, date_time, INTERVAL '10' SECOND)
    GROUP BY seller, window_start, window_end
) A ON P.id = A.seller AND P.window_start = A.window_start AND P.window_end = A.window_end;
