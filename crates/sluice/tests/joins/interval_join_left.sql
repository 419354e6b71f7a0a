-- Interval join, LEFT outer: each auction with the bids made on it within 3 seconds of
-- its opening (either way); auctions without such a bid come out once the watermark
-- says none can come.
INSERT INTO nexmark_out
SELECT A.id, A.date_time AS opened, B.price, B.date_time AS bid_time
FROM auction A
LEFT JOIN bid B
  ON A.id = B.auction
 AND B.date_time BETWEEN A.date_time - INTERVAL '3' SECOND AND A.date_time + INTERVAL '3' SECOND;
