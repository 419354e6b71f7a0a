-- Nexmark Q0 asked of the whole tables at once (the oracle).
SELECT auction, bidder, price, date_time FROM bid
