-- A top N over an updating result, a leaderboard: the five bidders with the most bids so
-- far, ranked (a bid may move its bidder up a rank and push another down one).
INSERT INTO nexmark_out
SELECT rn, bidder, bids, highest FROM (
    SELECT bidder, bids, highest, ROW_NUMBER() OVER (ORDER BY bids DESC, bidder) AS rn
    FROM (SELECT bidder, count(*) AS bids, max(price) AS highest FROM bid GROUP BY bidder))
WHERE rn <= 5;
