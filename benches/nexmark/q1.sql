-- Q1: currency conversion (dollars to euros).
INSERT INTO nexmark_out
SELECT auction, bidder, 0.908 * price AS price, date_time FROM bid;
