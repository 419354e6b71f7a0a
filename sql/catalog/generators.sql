-- The embedded default: the reference jobs' streams from the built-in generators and
-- their results as JSON-lines files under ${OUTPUT_DIR:-out}. No Kafka, no database.
--   sluice run sql/iot_alerts.sql --catalog sql/catalog/generators.sql
-- Later catalog files replace these tables by name (sql/catalog/kafka.sql reads the
-- streams from Kafka instead, sql/catalog/postgres.sql writes the results to PostgreSQL).

-- Streams: rates, speed-up, limits and seed from the environment.
CREATE TABLE iot_sensors (
    sensor_id     TEXT NOT NULL,
    location      TEXT NOT NULL,
    temperature   DOUBLE,
    humidity      DOUBLE,
    pressure      DOUBLE,
    battery_level DOUBLE,
    event_time    TIMESTAMP NOT NULL,
    reading_id    BIGINT,
    WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE
) WITH (
    connector = 'generator',
    profile = 'iot',
    keys = '${IOT_SENSORS:-100}',
    rate = '${IOT_RATE:-2000}',
    speedup = '${IOT_SPEEDUP:-60}',
    seed = '${SEED:-42}',
    disorder = '${DISORDER:-30s}',
    late_fraction = '${LATE_FRACTION:-0.001}',
    duplicate_fraction = '${DUPLICATE_FRACTION:-0.01}',
    limit = '${IOT_LIMIT:-}',
    start_time = '${START_TIME:-}'
);

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

-- Factory machines: temperature, vibration and energy readings, some of them faults.
CREATE TABLE factory_readings (
    machine_id  TEXT NOT NULL,
    line        TEXT NOT NULL,
    sensor_type TEXT NOT NULL,
    value       DOUBLE NOT NULL,
    unit        TEXT NOT NULL,
    event_time  TIMESTAMP NOT NULL,
    reading_id  BIGINT NOT NULL,
    WATERMARK FOR event_time AS event_time - INTERVAL '1' MINUTE
) WITH (
    connector = 'generator',
    profile = 'factory',
    keys = '${FACTORY_MACHINES:-20}',
    rate = '${FACTORY_RATE:-600}',
    speedup = '${FACTORY_SPEEDUP:-10}',
    seed = '${SEED:-42}',
    disorder = '${FACTORY_DISORDER:-10s}',
    anomaly_fraction = '${ANOMALY_FRACTION:-0.002}',
    duplicate_fraction = '${DUPLICATE_FRACTION:-0.01}',
    limit = '${FACTORY_LIMIT:-}',
    start_time = '${START_TIME:-}'
);

-- Warning and critical levels per sensor type (sql/catalog/postgres.sql reads them from
-- PostgreSQL instead, where they can be edited while jobs run).
CREATE TABLE sensor_thresholds (
    sensor_type TEXT NOT NULL,
    unit        TEXT,
    warning     DOUBLE NOT NULL,
    critical    DOUBLE NOT NULL
) WITH (connector = 'file', path = '${SQL_DATA:-sql/data}/sensor_thresholds.jsonl');

-- Race cars lapping the bundled track, 10 positions a second each.
CREATE TABLE race_positions (
    car_id         TEXT NOT NULL,
    lap            BIGINT NOT NULL,
    lat            DOUBLE NOT NULL,
    lon            DOUBLE NOT NULL,
    speed_kmh      DOUBLE NOT NULL,
    lap_distance_m DOUBLE NOT NULL,
    lap_progress   DOUBLE NOT NULL,
    event_time     TIMESTAMP NOT NULL,
    WATERMARK FOR event_time AS event_time - INTERVAL '1' SECOND
) WITH (
    connector = 'generator',
    profile = 'race',
    keys = '${RACE_CARS:-10}',
    rate = '${RACE_RATE:-100}',
    speedup = '${RACE_SPEEDUP:-1}',
    seed = '${SEED:-42}',
    disorder = '${RACE_DISORDER:-200ms}',
    limit = '${RACE_LIMIT:-}',
    start_time = '${START_TIME:-}'
);

-- This machine's own usage, sampled every HOST_INTERVAL.
CREATE TABLE host_metrics (
    host               TEXT NOT NULL,
    sample_time        TIMESTAMP NOT NULL,
    cpu_percent        DOUBLE NOT NULL,
    cpu_cores          BIGINT NOT NULL,
    memory_used_bytes  BIGINT NOT NULL,
    memory_total_bytes BIGINT NOT NULL,
    disk_used_bytes    BIGINT NOT NULL,
    disk_total_bytes   BIGINT NOT NULL,
    net_rx_bytes       BIGINT NOT NULL,
    net_tx_bytes       BIGINT NOT NULL,
    WATERMARK FOR sample_time AS sample_time - INTERVAL '5' SECOND
) WITH (
    connector = 'host_metrics',
    interval = '${HOST_INTERVAL:-5s}',
    limit = '${HOST_LIMIT:-}'
);

-- Results: one JSON object per line, named as the jobs name their columns.
CREATE TABLE sensor_metrics_5m WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/sensor_metrics_5m.jsonl');
CREATE TABLE sensor_battery_5m WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/sensor_battery_5m.jsonl');
CREATE TABLE iot_alerts WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/iot_alerts.jsonl');
CREATE TABLE activity_by_browser WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/activity_by_browser.jsonl');
CREATE TABLE activity_by_event_type WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/activity_by_event_type.jsonl');
CREATE TABLE activity_5m WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/activity_5m.jsonl');
CREATE TABLE sessions WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/sessions.jsonl');
CREATE TABLE long_sessions WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/long_sessions.jsonl');
-- Updating results as changelogs: each row with an op column (+I, -U, +U, -D).
CREATE TABLE sensor_latest WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/sensor_latest.jsonl',
    'changelog.mode' = 'all');
CREATE TABLE location_readings WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/location_readings.jsonl',
    'changelog.mode' = 'all');
CREATE TABLE factory_alerts WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/factory_alerts.jsonl');
CREATE TABLE factory_alert_events WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/factory_alert_events.jsonl');
CREATE TABLE machine_stats_1m WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/machine_stats_1m.jsonl');
CREATE TABLE machine_health WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/machine_health.jsonl',
    'changelog.mode' = 'all');
CREATE TABLE host_metrics_1m WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/host_metrics_1m.jsonl');
CREATE TABLE car_speed_5s WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/car_speed_5s.jsonl');
CREATE TABLE lap_times WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/lap_times.jsonl');
CREATE TABLE leaderboard WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/leaderboard.jsonl',
    'changelog.mode' = 'all');
CREATE TABLE host_status WITH (connector = 'file', path = '${OUTPUT_DIR:-out}/host_status.jsonl',
    'changelog.mode' = 'all');
