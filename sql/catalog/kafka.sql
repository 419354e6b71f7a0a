-- The reference jobs' streams from Kafka topics (filled by `sluice generate`, JSON, one
-- record per event), the IoT alerts to the Kafka topic iot_alerts, keyed by entity, and
-- the factory alerts to factory_alerts, keyed by alert id.
-- Put it after sql/catalog/generators.sql, whose file sinks the other results keep:
--   sluice run sql/iot_alerts.sql --catalog sql/catalog/generators.sql --catalog sql/catalog/kafka.sql
-- Malformed records go to dead_letters/<table>.jsonl with their offsets.

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
    connector = 'kafka',
    topic = '${IOT_SENSORS_TOPIC:-iot_sensors}',
    'bootstrap.servers' = '${KAFKA_BROKERS:-localhost:9092}',
    format = 'json',
    scan.startup.mode = '${STARTUP_MODE:-earliest}',
    scan.bounded.mode = '${SCAN_BOUNDED:-unbounded}',
    bad_data = 'dead_letter',
    'dead_letter.path' = 'dead_letters/iot_sensors.jsonl'
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
    connector = 'kafka',
    topic = '${USER_ACTIVITY_TOPIC:-user_activity}',
    'bootstrap.servers' = '${KAFKA_BROKERS:-localhost:9092}',
    format = 'json',
    scan.startup.mode = '${STARTUP_MODE:-earliest}',
    scan.bounded.mode = '${SCAN_BOUNDED:-unbounded}',
    bad_data = 'dead_letter',
    'dead_letter.path' = 'dead_letters/user_activity.jsonl'
);

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
    connector = 'kafka',
    topic = '${FACTORY_READINGS_TOPIC:-factory_readings}',
    'bootstrap.servers' = '${KAFKA_BROKERS:-localhost:9092}',
    format = 'json',
    scan.startup.mode = '${STARTUP_MODE:-earliest}',
    scan.bounded.mode = '${SCAN_BOUNDED:-unbounded}',
    bad_data = 'dead_letter',
    'dead_letter.path' = 'dead_letters/factory_readings.jsonl'
);

-- Race cars' positions, from `sluice generate race` (keyed by car).
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
    connector = 'kafka',
    topic = '${RACE_POSITIONS_TOPIC:-race_positions}',
    'bootstrap.servers' = '${KAFKA_BROKERS:-localhost:9092}',
    format = 'json',
    scan.startup.mode = '${STARTUP_MODE:-earliest}',
    scan.bounded.mode = '${SCAN_BOUNDED:-unbounded}',
    bad_data = 'dead_letter',
    'dead_letter.path' = 'dead_letters/race_positions.jsonl'
);

-- Host metrics, from `sluice generate host-metrics` running on each host (keyed by host).
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
    WATERMARK FOR sample_time AS sample_time - INTERVAL '10' SECOND
) WITH (
    connector = 'kafka',
    topic = '${HOST_METRICS_TOPIC:-host_metrics}',
    'bootstrap.servers' = '${KAFKA_BROKERS:-localhost:9092}',
    format = 'json',
    scan.startup.mode = '${STARTUP_MODE:-earliest}',
    scan.bounded.mode = '${SCAN_BOUNDED:-unbounded}',
    bad_data = 'dead_letter',
    'dead_letter.path' = 'dead_letters/host_metrics.jsonl'
);

-- Factory alerts as events, keyed by alert id: at least once (the test broker has no
-- transactions; with a broker that has them, add 'sink.delivery-guarantee' =
-- 'exactly-once'), and a consumer drops a repeated id.
CREATE TABLE factory_alert_events WITH (
    connector = 'kafka',
    topic = '${FACTORY_ALERTS_TOPIC:-factory_alerts}',
    'bootstrap.servers' = '${KAFKA_BROKERS:-localhost:9092}',
    key = 'alert_id'
);

CREATE TABLE iot_alerts WITH (
    connector = 'kafka',
    topic = '${ALERTS_TOPIC:-iot_alerts}',
    'bootstrap.servers' = '${KAFKA_BROKERS:-localhost:9092}',
    key = 'entity'
);
