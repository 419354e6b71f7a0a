-- A time bound taken from an ordinary column (an auction's `expires`, as Nexmark q4 and
-- q9 have) does not make an interval join: it is a regular join with that condition as
-- its filter, as in Flink. Bids over 50,000 made while their auction was open.
INSERT INTO nexmark_out
SELECT A.id AS auction, A.seller, B.bidder, B.price, B.date_time AS bid_time
FROM auction A
JOIN bid B ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
WHERE B.price > 5000000;
