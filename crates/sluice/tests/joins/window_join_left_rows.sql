-- Window join of windowed rows (no aggregate): each auction with the bids on it in the
-- same 5-second window, LEFT outer (auctions without a bid there come out with NULLs).
INSERT INTO nexmark_out
SELECT A.id, A.window_start, B.price, B.bidder
FROM TUMBLE(auction, date_time, INTERVAL '5' SECOND) A
LEFT JOIN TUMBLE(bid, date_time, INTERVAL '5' SECOND) B
  ON A.id = B.auction AND A.window_start = B.window_start AND A.window_end = B.window_end;
