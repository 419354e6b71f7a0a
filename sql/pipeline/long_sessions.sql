-- The pipeline's sessions: every session per user (30 minutes without events ends
-- one), and the long ones (over 5 minutes) as alerts, into PostgreSQL exactly once.

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
    connector = 'kafka',
    topic = '${USER_ACTIVITY_TOPIC:-user_activity}',
    'bootstrap.servers' = '${KAFKA_BROKERS:-localhost:9092}',
    format = 'json',
    scan.startup.mode = 'earliest',
    scan.bounded.mode = '${SCAN_BOUNDED:-unbounded}',
    group.id = 'sluice-long_sessions',
    bad_data = 'dead_letter',
    'dead_letter.path' = 'dead_letters/long_sessions.jsonl'
);

CREATE TABLE sessions WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'user_id, session_start'
);

CREATE TABLE long_sessions WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'user_id, session_start'
);

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
