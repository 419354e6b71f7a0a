-- Q13: bids joined with a bounded side input (read first, then streamed against).
INSERT INTO nexmark_out
SELECT B.auction, B.bidder, B.price, B.date_time, S.value
FROM bid B JOIN side_input S ON B.auction % 10000 = S.key;
