-- iot_aggregates, reading Kafka (topics filled by `sluice generate`) instead of the generator.

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
    group.id = 'sluice-iot_aggregates',
    bad_data = 'dead_letter',
    'dead_letter.path' = '${OUTPUT_DIR:-out}/dead_letters_iot_aggregates.jsonl'
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
