-- Sessions (a SESSION window per user, gap 30 minutes) lasting more than 5 minutes,
-- with start, end, duration and event count. A session's end is its last event, so
-- duration = end - start; the window closes 30 minutes (the gap) after the last event.

CREATE TABLE user_activity (
    user_id    TEXT NOT NULL,
    session_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    page       TEXT,
    browser    TEXT,
    device     TEXT,
    event_time TIMESTAMP NOT NULL,
    WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE
) WITH (
    connector = 'generator',
    profile = 'user_activity',
    keys = '${USERS:-2000}',
    rate = '${USER_RATE:-1}',
    speedup = '${USER_SPEEDUP:-300}',
    seed = '${SEED:-42}',
    disorder = '${DISORDER:-30s}',
    late_fraction = '${LATE_FRACTION:-0.001}',
    limit = '${USER_LIMIT:-}',
    start_time = '${START_TIME:-}'
);

CREATE TABLE long_sessions (
    session_start    TIMESTAMP,
    session_end      TIMESTAMP,
    user_id          TEXT,
    duration_seconds BIGINT,
    events           BIGINT,
    purchases        BIGINT
) WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/long_sessions.jsonl');

INSERT INTO long_sessions
SELECT min(event_time), max(event_time), user_id,
       (CAST(max(event_time) AS BIGINT) - CAST(min(event_time) AS BIGINT)) / 1000,
       count(*),
       sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END)
FROM SESSION(user_activity, event_time, INTERVAL '30' MINUTE)
GROUP BY window_start, window_end, user_id
HAVING max(event_time) - min(event_time) > INTERVAL '5' MINUTE;
