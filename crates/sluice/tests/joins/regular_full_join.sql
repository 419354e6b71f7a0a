-- A FULL join without a time bound: sellers of category 10 and bidders of high bids,
-- matched by person id, either side padded until the other comes.
INSERT INTO nexmark_out
SELECT A.seller, A.id AS auction, B.bidder, B.price
FROM (SELECT seller, id FROM auction WHERE category = 10) A
FULL JOIN (SELECT bidder, price FROM bid WHERE price > 9000000) B ON A.seller = B.bidder;
