-- Nexmark Q8 asked of the whole tables at once (the oracle).
WITH p AS (SELECT DISTINCT id, name, (CAST(date_time AS BIGINT) / 10000) * 10000 AS ws FROM person),
a AS (SELECT DISTINCT seller, (CAST(date_time AS BIGINT) / 10000) * 10000 AS ws FROM auction)
SELECT p.id, p.name, to_timestamp_millis(p.ws) AS starttime
FROM p WHERE EXISTS (SELECT 1 FROM a WHERE a.seller = p.id AND a.ws = p.ws)
