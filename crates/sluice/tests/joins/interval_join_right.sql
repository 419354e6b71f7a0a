-- Interval join, RIGHT outer, the bound on the other side's time: each bid with a
-- person of the same id signing up in the 2 seconds before the bid.
INSERT INTO nexmark_out
SELECT P.id, P.date_time AS signed_up, B.auction, B.date_time AS bid_time
FROM person P
RIGHT JOIN bid B
  ON P.id = B.bidder
 AND P.date_time BETWEEN B.date_time - INTERVAL '2' SECOND AND B.date_time;
