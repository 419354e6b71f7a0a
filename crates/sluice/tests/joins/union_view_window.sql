-- UNION ALL of two streams in a view, windowed; a second statement reads the same view.
CREATE VIEW activity AS
    SELECT seller AS who, 'auction' AS what, date_time FROM auction
    UNION ALL
    SELECT bidder AS who, 'bid' AS what, date_time FROM bid;

INSERT INTO nexmark_out
SELECT who, window_start, count(*) AS n, count(DISTINCT what) AS kinds
FROM TUMBLE(activity, date_time, INTERVAL '10' SECOND)
GROUP BY who, window_start, window_end;

INSERT INTO nexmark_out
SELECT who, window_start, count(*) AS n, 0 AS kinds
FROM TUMBLE(activity, date_time, INTERVAL '30' SECOND)
WHERE what = 'auction'
GROUP BY who, window_start, window_end;
