-- A GROUP BY without a window: each bidder's running bid count, total, highest price
-- and first bid (an updating result: each changed bidder once per checkpoint).
INSERT INTO nexmark_out
SELECT bidder, count(*) AS bids, sum(price) AS total, max(price) AS top, min(date_time) AS first_bid
FROM bid
GROUP BY bidder;
