-- user_activity, reading Kafka (topics filled by `sluice generate`) instead of the generator.

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
    group.id = 'sluice-user_activity',
    bad_data = 'dead_letter',
    'dead_letter.path' = '${OUTPUT_DIR:-out}/dead_letters_user_activity.jsonl'
);

CREATE TABLE activity_by_browser (
    window_start TIMESTAMP,
    window_end   TIMESTAMP,
    browser      TEXT,
    events       BIGINT,
    users        BIGINT,
    purchases    BIGINT
) WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/activity_by_browser.jsonl');

CREATE TABLE activity_by_event_type (
    window_start TIMESTAMP,
    window_end   TIMESTAMP,
    event_type   TEXT,
    events       BIGINT,
    users        BIGINT
) WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/activity_by_event_type.jsonl');

CREATE TABLE activity_5m (
    window_start   TIMESTAMP,
    window_end     TIMESTAMP,
    events         BIGINT,
    distinct_users BIGINT,
    sessions       BIGINT,
    purchases      BIGINT
) WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/activity_5m.jsonl');

INSERT INTO activity_by_browser
SELECT window_start, window_end, browser, count(*), count(DISTINCT user_id),
       sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END)
FROM TUMBLE(user_activity, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, browser;

INSERT INTO activity_by_event_type
SELECT window_start, window_end, event_type, count(*), count(DISTINCT user_id)
FROM TUMBLE(user_activity, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, event_type;

INSERT INTO activity_5m
SELECT window_start, window_end, count(*), count(DISTINCT user_id), count(DISTINCT session_id),
       sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END)
FROM TUMBLE(user_activity, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end;
