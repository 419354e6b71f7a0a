-- The example job: IoT readings from a JSON-lines file (no Kafka, no database),
-- 5-minute tumbling aggregates per location and temperature alerts, on the console.
-- Run it with: scripts/demo.sh   (or: sluice run sql/example_iot_file.sql)

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
    connector = 'file',
    path = '${IOT_INPUT:-sql/data/iot_sample.jsonl}',
    format = 'json',
    bad_data = 'drop'
);

CREATE TABLE sensor_metrics_5m WITH (connector = 'console');

CREATE TABLE temperature_alerts WITH (
    connector = 'file',
    path = '${ALERTS_OUTPUT:-out/temperature_alerts.jsonl}'
);

INSERT INTO sensor_metrics_5m
SELECT window_start, window_end, location,
       count(*) AS readings,
       round(avg(temperature), 2) AS avg_temperature,
       max(temperature) AS max_temperature,
       min(battery_level) AS min_battery
FROM TUMBLE(iot_sensors, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, location;

INSERT INTO temperature_alerts
SELECT event_time AS alert_time, 'high_temperature' AS kind, sensor_id AS entity,
       temperature AS value, 30.0 AS threshold
FROM iot_sensors
WHERE temperature > 30;
