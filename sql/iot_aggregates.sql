-- Per 5-minute tumbling window and location: readings, temperature, humidity,
-- pressure and the lowest battery. Source: the IoT generator (no Kafka needed);
-- sink: a JSON-lines file under ${OUTPUT_DIR:-out}.

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

CREATE TABLE sensor_metrics_5m (
    window_start    TIMESTAMP,
    window_end      TIMESTAMP,
    location        TEXT,
    readings        BIGINT,
    avg_temperature DOUBLE,
    min_temperature DOUBLE,
    max_temperature DOUBLE,
    avg_humidity    DOUBLE,
    avg_pressure    DOUBLE,
    min_battery     DOUBLE
) WITH (
    connector = 'file',
    path = '${OUTPUT_DIR:-out}/sensor_metrics_5m.jsonl'
);

INSERT INTO sensor_metrics_5m
SELECT window_start, window_end, location,
       count(*),
       round(avg(temperature), 2),
       min(temperature),
       max(temperature),
       round(avg(humidity), 2),
       round(avg(pressure), 2),
       min(battery_level)
FROM TUMBLE(iot_sensors, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, location;
