-- Alerts on each sensor's own limit: IoT readings joined to the `sensors` table in
-- PostgreSQL (looked up by sensor id, cached for a minute, so an edited limit applies
-- within a minute), written exactly once to PostgreSQL's iot_alerts.
--   psql "$DATABASE_URL" -f sql/schema.sql   # creates and fills `sensors`
--   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres sluice run sql/postgres/iot_sensor_limits.sql

CREATE TABLE iot_sensors (
    sensor_id     TEXT NOT NULL,
    location      TEXT NOT NULL,
    temperature   DOUBLE,
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
    limit = '${IOT_LIMIT:-}',
    start_time = '${START_TIME:-}'
);

CREATE TABLE sensors (
    sensor_id TEXT NOT NULL,
    max_temp  DOUBLE
) WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}',
    table = 'sensors',
    'lookup.cache.ttl' = '1 min'
);

CREATE TABLE iot_alerts WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}',
    table = 'iot_alerts'
);

INSERT INTO iot_alerts
SELECT r.event_time AS alert_time, 'over_sensor_limit' AS kind, r.sensor_id AS entity,
       r.location, r.temperature AS value, s.max_temp AS threshold
FROM iot_sensors r
JOIN sensors s ON r.sensor_id = s.sensor_id
WHERE r.temperature > s.max_temp;
