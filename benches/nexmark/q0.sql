-- Q0: pass-through (the cost of reading and writing).
INSERT INTO nexmark_out
SELECT auction, bidder, price, date_time FROM bid;
