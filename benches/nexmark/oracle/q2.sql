-- Nexmark Q2 asked of the whole tables at once (the oracle).
SELECT auction, price FROM bid WHERE auction IN (1007, 1020, 2001, 2019, 2087)
