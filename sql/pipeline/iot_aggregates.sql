-- The pipeline's IoT aggregates: per location and per sensor, 5-minute windows, from
-- Kafka into PostgreSQL (tables in sql/schema.sql), exactly once.

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
    group.id = 'sluice-iot_aggregates',
    bad_data = 'dead_letter',
    'dead_letter.path' = 'dead_letters/iot_aggregates.jsonl'
);

CREATE TABLE sensor_metrics_5m WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start, location'
);

CREATE TABLE sensor_battery_5m WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start, sensor_id'
);

INSERT INTO sensor_metrics_5m
SELECT window_start, window_end, location,
       count(*) AS readings,
       round(avg(temperature), 2) AS avg_temperature,
       min(temperature) AS min_temperature,
       max(temperature) AS max_temperature,
       round(avg(humidity), 2) AS avg_humidity,
       round(avg(pressure), 2) AS avg_pressure,
       min(battery_level) AS min_battery
FROM TUMBLE(iot_sensors, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, location;

INSERT INTO sensor_battery_5m
SELECT window_start, window_end, sensor_id, location, min(battery_level) AS min_battery
FROM TUMBLE(iot_sensors, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, sensor_id, location;
