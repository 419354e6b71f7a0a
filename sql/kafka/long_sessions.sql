-- long_sessions, reading Kafka (topics filled by `sluice generate`) instead of the generator.

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
    scan.startup.mode = '${STARTUP_MODE:-earliest}',
    group.id = 'sluice-long_sessions',
    bad_data = 'dead_letter',
    'dead_letter.path' = '${OUTPUT_DIR:-out}/dead_letters_long_sessions.jsonl'
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
