-- Per 5-minute window: events by browser and by event type, and overall (distinct users,
-- sessions, purchases).
-- Reads user_activity; writes activity_by_browser, activity_by_event_type and activity_5m.

INSERT INTO activity_by_browser
SELECT window_start, window_end, browser, count(*) AS events, count(DISTINCT user_id) AS users,
       sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases
FROM TUMBLE(user_activity, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, browser;

INSERT INTO activity_by_event_type
SELECT window_start, window_end, event_type, count(*) AS events,
       count(DISTINCT user_id) AS users
FROM TUMBLE(user_activity, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, event_type;

INSERT INTO activity_5m
SELECT window_start, window_end, count(*) AS events, count(DISTINCT user_id) AS distinct_users,
       count(DISTINCT session_id) AS sessions,
       sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases
FROM TUMBLE(user_activity, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end;
