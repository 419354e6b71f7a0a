-- Nexmark Q13 asked of the whole tables at once (the oracle).
SELECT b.auction, b.bidder, b.price, b.date_time, s.value
FROM bid b JOIN side_input s ON b.auction % 10000 = s.key
