-- Sessions: a SESSION window per user (30 minutes without events ends one), each with
-- its start, end (its last event), duration and counts; the ones longer than 5 minutes
-- also as alerts. The window closes 30 minutes (the gap) after the last event.
-- Reads user_activity; writes sessions and long_sessions.

INSERT INTO sessions
SELECT min(event_time) AS session_start, max(event_time) AS session_end, user_id,
       (CAST(max(event_time) AS BIGINT) - CAST(min(event_time) AS BIGINT)) / 1000 AS duration_seconds,
       count(*) AS events,
       sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases
FROM SESSION(user_activity, event_time, INTERVAL '30' MINUTE)
GROUP BY window_start, window_end, user_id;

INSERT INTO long_sessions
SELECT min(event_time) AS session_start, max(event_time) AS session_end, user_id,
       (CAST(max(event_time) AS BIGINT) - CAST(min(event_time) AS BIGINT)) / 1000 AS duration_seconds,
       count(*) AS events,
       sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases
FROM SESSION(user_activity, event_time, INTERVAL '30' MINUTE)
GROUP BY window_start, window_end, user_id
HAVING max(event_time) - min(event_time) > INTERVAL '5' MINUTE;
