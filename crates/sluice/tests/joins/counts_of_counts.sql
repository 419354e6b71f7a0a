-- Retractions through two levels: how many bidders have made each number of bids (an
-- aggregate over an updating aggregate: a bidder's next bid takes it out of one bucket
-- and puts it in the next).
INSERT INTO nexmark_out
SELECT bids, count(*) AS bidders, max(top) AS top
FROM (SELECT bidder, count(*) AS bids, max(price) AS top FROM bid GROUP BY bidder)
GROUP BY bids;
