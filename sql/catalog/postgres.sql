-- The reference jobs' results in PostgreSQL, exactly once (tables created by
-- sql/schema.sql), and the `sensors` table each sensor's own limit is looked up in.
-- Put it last: with sql/catalog/kafka.sql before it, this is the pipeline (Kafka in,
-- PostgreSQL out) that scripts/pipeline.sh and docker-compose.yml run:
--   sluice run sql/iot_alerts.sql --catalog sql/catalog/kafka.sql --catalog sql/catalog/postgres.sql

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

CREATE TABLE iot_alerts WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false'
);

CREATE TABLE activity_by_browser WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start, browser'
);

CREATE TABLE activity_by_event_type WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start, event_type'
);

CREATE TABLE activity_5m WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start'
);

CREATE TABLE sessions WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'user_id, session_start'
);

CREATE TABLE long_sessions WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'user_id, session_start'
);

-- Each sensor's own temperature limit, looked up by sensor id and kept for a minute (so
-- an edited limit applies within a minute).
CREATE TABLE sensors (
    sensor_id TEXT NOT NULL,
    max_temp  DOUBLE
) WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    table = 'sensors',
    'lookup.cache.ttl' = '1 min'
);

-- Updating results, upserted on their keys (a sensor's row replaced by its newest
-- reading; a location's running count).
CREATE TABLE sensor_latest WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'sensor_id'
);

CREATE TABLE location_readings WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'location'
);

-- Factory monitoring: thresholds looked up by sensor type (edit a row and alerts follow
-- within a minute), alerts upserted on their id, machine health upserted per machine.
CREATE TABLE sensor_thresholds (
    sensor_type TEXT NOT NULL,
    unit        TEXT,
    warning     DOUBLE NOT NULL,
    critical    DOUBLE NOT NULL
) WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    table = 'sensor_thresholds',
    'lookup.cache.ttl' = '${THRESHOLDS_TTL:-1 min}'
);

CREATE TABLE factory_alerts WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'alert_id'
);

CREATE TABLE machine_health WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'machine_id'
);

CREATE TABLE machine_stats_1m WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start, machine_id, sensor_type'
);

-- Host metrics: minutes per host, and each host's latest status (upserted per host).
CREATE TABLE host_metrics_1m WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start, host'
);

CREATE TABLE host_status WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'host'
);

CREATE TABLE car_speed_5s WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'window_start, car_id'
);

CREATE TABLE lap_times WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'car_id, lap'
);

CREATE TABLE leaderboard WITH (
    connector = 'postgres',
    url = '${DATABASE_URL:-postgres://postgres@localhost:5432/sluice}',
    create_table = 'false',
    primary_key = 'place'
);
