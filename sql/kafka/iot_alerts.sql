-- iot_alerts, reading Kafka (topics filled by `sluice generate`) instead of the generator.

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
    scan.startup.mode = '${STARTUP_MODE:-earliest}',
    group.id = 'sluice-iot_alerts',
    bad_data = 'dead_letter',
    'dead_letter.path' = '${OUTPUT_DIR:-out}/dead_letters_iot_alerts.jsonl'
);

CREATE TABLE iot_alerts (
    alert_time TIMESTAMP,
    kind       TEXT,
    entity     TEXT,
    location   TEXT,
    value      DOUBLE,
    threshold  DOUBLE
) WITH (
    connector = 'kafka',
    topic = '${ALERTS_TOPIC:-iot_alerts}',
    'bootstrap.servers' = '${KAFKA_BROKERS:-localhost:9092}',
    key = 'entity'
);

INSERT INTO iot_alerts
SELECT event_time, 'high_temperature', sensor_id, location, temperature, 30.0
FROM iot_sensors
WHERE temperature > 30;

INSERT INTO iot_alerts
SELECT window_end, 'low_battery', sensor_id, location, min(battery_level), 20.0
FROM TUMBLE(iot_sensors, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, sensor_id, location
HAVING min(battery_level) < 20;
