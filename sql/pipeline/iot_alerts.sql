-- The pipeline's IoT alerts: every reading above 30 °C, and every sensor whose battery
-- is below 20 % in a 5-minute window, appended to PostgreSQL exactly once.

CREATE TABLE iot_sensors (
    sensor_id     TEXT NOT NULL,
    location      TEXT NOT NULL,
    temperature   DOUBLE,
    humidity      DOUBLE,
    pressure      DOUBLE,
    battery_level DOUBLE,
    event_time    TIMESTAMP NOT NULL,
    WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE
) WITH (
    connector = 'kafka',
    topic = '${IOT_SENSORS_TOPIC:-iot_sensors}',
    'bootstrap.servers' = '${KAFKA_BROKERS:-localhost:9092}',
    format = 'json',
    scan.startup.mode = 'earliest',
    scan.bounded.mode = '${SCAN_BOUNDED:-unbounded}',
    group.id = 'sluice-iot_alerts',
    bad_data = 'dead_letter',
    'dead_letter.path' = 'dead_letters/iot_alerts.jsonl'
);

CREATE TABLE iot_alerts WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false'
);

INSERT INTO iot_alerts
SELECT event_time AS alert_time, 'high_temperature' AS kind, sensor_id AS entity, location,
       temperature AS value, 30.0 AS threshold
FROM iot_sensors
WHERE temperature > 30;

INSERT INTO iot_alerts
SELECT window_end AS alert_time, 'low_battery' AS kind, sensor_id AS entity, location,
       min(battery_level) AS value, 20.0 AS threshold
FROM TUMBLE(iot_sensors, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, sensor_id, location
HAVING min(battery_level) < 20;
