-- Nexmark Q1 asked of the whole tables at once (the oracle).
SELECT auction, bidder, 0.908 * price AS price, date_time FROM bid
