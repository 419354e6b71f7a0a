-- Alerts: every reading above 30 °C, and every sensor whose battery is below 20 % in a
-- 5-minute window. Each alert has its time, kind, entity, value and threshold.

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
    connector = 'generator',
    profile = 'iot',
    keys = '${IOT_SENSORS:-100}',
    rate = '${IOT_RATE:-2000}',
    speedup = '${IOT_SPEEDUP:-60}',
    seed = '${SEED:-42}',
    disorder = '${DISORDER:-30s}',
    late_fraction = '${LATE_FRACTION:-0.001}',
    limit = '${IOT_LIMIT:-}',
    start_time = '${START_TIME:-}'
);

CREATE TABLE iot_alerts (
    alert_time TIMESTAMP,
    kind       TEXT,
    entity     TEXT,
    location   TEXT,
    value      DOUBLE,
    threshold  DOUBLE
) WITH (
    connector = 'file',
    path = '${OUTPUT_DIR:-out}/iot_alerts.jsonl'
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
