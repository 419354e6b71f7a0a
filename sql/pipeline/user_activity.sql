-- The pipeline's user activity: events per 5-minute window by browser and by event
-- type, and overall (distinct users, sessions, purchases), into PostgreSQL exactly once.

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
    group.id = 'sluice-user_activity',
    bad_data = 'dead_letter',
    'dead_letter.path' = 'dead_letters/user_activity.jsonl'
);

CREATE TABLE activity_by_browser WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start, browser'
);

CREATE TABLE activity_by_event_type WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start, event_type'
);

CREATE TABLE activity_5m WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start'
);

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
