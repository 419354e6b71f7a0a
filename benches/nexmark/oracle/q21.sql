-- Nexmark Q21 asked of the whole tables at once (the oracle).
SELECT auction, bidder, price, channel,
   CASE lower(channel) WHEN 'apple' THEN '0' WHEN 'google' THEN '1'
        WHEN 'facebook' THEN '2' WHEN 'baidu' THEN '3'
        ELSE regexp_match(url, '(&|^)channel_id=([^&]*)')[2] END AS channel_id
FROM bid
WHERE regexp_match(url, '(&|^)channel_id=([^&]*)')[2] IS NOT NULL
   OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')
