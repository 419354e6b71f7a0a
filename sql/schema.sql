-- The PostgreSQL tables the pipeline jobs (sql/pipeline/*.sql) write and the Grafana
-- dashboards (grafana/dashboards/*.json) read. Window results are keyed by their window
-- and group (the sink upserts on the key, so a replay after a crash rewrites, never
-- doubles); alerts are appended, fenced by the sink's epoch. The indexes serve the
-- dashboards' time-range filters.

CREATE TABLE IF NOT EXISTS sensor_metrics_5m (
    window_start    timestamptz NOT NULL,
    window_end      timestamptz NOT NULL,
    location        text NOT NULL,
    readings        bigint,
    avg_temperature double precision,
    min_temperature double precision,
    max_temperature double precision,
    avg_humidity    double precision,
    avg_pressure    double precision,
    min_battery     double precision,
    PRIMARY KEY (window_start, location)
);

CREATE TABLE IF NOT EXISTS sensor_battery_5m (
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    sensor_id    text NOT NULL,
    location     text NOT NULL,
    min_battery  double precision,
    PRIMARY KEY (window_start, sensor_id)
);
CREATE INDEX IF NOT EXISTS sensor_battery_5m_sensor ON sensor_battery_5m (sensor_id, window_start);

CREATE TABLE IF NOT EXISTS iot_alerts (
    alert_time timestamptz NOT NULL,
    kind       text NOT NULL,
    entity     text NOT NULL,
    location   text,
    value      double precision,
    threshold  double precision
);
CREATE INDEX IF NOT EXISTS iot_alerts_time ON iot_alerts (alert_time);
CREATE INDEX IF NOT EXISTS iot_alerts_kind_time ON iot_alerts (kind, alert_time);

CREATE TABLE IF NOT EXISTS activity_by_browser (
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    browser      text NOT NULL,
    events       bigint,
    users        bigint,
    purchases    bigint,
    PRIMARY KEY (window_start, browser)
);

CREATE TABLE IF NOT EXISTS activity_by_event_type (
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    event_type   text NOT NULL,
    events       bigint,
    users        bigint,
    PRIMARY KEY (window_start, event_type)
);

CREATE TABLE IF NOT EXISTS activity_5m (
    window_start   timestamptz NOT NULL PRIMARY KEY,
    window_end     timestamptz NOT NULL,
    events         bigint,
    distinct_users bigint,
    sessions       bigint,
    purchases      bigint
);

-- Every session (for the duration distribution), keyed by user and start.
CREATE TABLE IF NOT EXISTS sessions (
    session_start    timestamptz NOT NULL,
    session_end      timestamptz NOT NULL,
    user_id          text NOT NULL,
    duration_seconds bigint,
    events           bigint,
    purchases        bigint,
    PRIMARY KEY (user_id, session_start)
);
CREATE INDEX IF NOT EXISTS sessions_end ON sessions (session_end);

-- Sessions longer than 5 minutes: the alerts.
CREATE TABLE IF NOT EXISTS long_sessions (
    session_start    timestamptz NOT NULL,
    session_end      timestamptz NOT NULL,
    user_id          text NOT NULL,
    duration_seconds bigint,
    events           bigint,
    purchases        bigint,
    PRIMARY KEY (user_id, session_start)
);
CREATE INDEX IF NOT EXISTS long_sessions_end ON long_sessions (session_end);

-- Written by the sinks themselves (one row per job and sink: the last committed epoch).
-- Updating results (sql/sensor_state.sql): one row per sensor, replaced by its newest
-- reading, and a running count per location.
CREATE TABLE IF NOT EXISTS sensor_latest (
    sensor_id     text PRIMARY KEY,
    location      text NOT NULL,
    temperature   double precision,
    humidity      double precision,
    pressure      double precision,
    battery_level double precision,
    reading_time  timestamptz NOT NULL,
    reading_id    bigint
);

CREATE TABLE IF NOT EXISTS location_readings (
    location     text PRIMARY KEY,
    readings     bigint NOT NULL,
    last_reading timestamptz
);

CREATE TABLE IF NOT EXISTS sluice_sink_progress (
    job        text NOT NULL,
    sink       text NOT NULL,
    epoch      bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, sink)
);

-- Each sensor's own temperature limit (sql/postgres/iot_sensor_limits.sql looks it up;
-- edit a row and alerts follow within the job's cache TTL).
CREATE TABLE IF NOT EXISTS sensors (
    sensor_id text PRIMARY KEY,
    max_temp  double precision NOT NULL
);
INSERT INTO sensors
SELECT 'sensor-' || lpad(i::text, 4, '0'), 18 + (i % 10)
FROM generate_series(0, 99) AS i
ON CONFLICT (sensor_id) DO NOTHING;

-- Factory monitoring (sql/factory_alerts.sql, sql/factory_health.sql). Warning and
-- critical levels per sensor type, looked up by the jobs: edit a row and alerts follow
-- within the jobs' cache TTL (a minute).
CREATE TABLE IF NOT EXISTS sensor_thresholds (
    sensor_type text PRIMARY KEY,
    unit        text,
    warning     double precision NOT NULL,
    critical    double precision NOT NULL
);
INSERT INTO sensor_thresholds VALUES
    ('temperature', 'celsius', 75, 85),
    ('vibration', 'mm_s', 6, 9),
    ('energy', 'kw', 60, 70)
ON CONFLICT (sensor_type) DO NOTHING;

-- One row per alert, keyed by its id (the reading's number): a replay rewrites it.
CREATE TABLE IF NOT EXISTS factory_alerts (
    alert_id    text PRIMARY KEY,
    alert_time  timestamptz NOT NULL,
    machine_id  text NOT NULL,
    line        text NOT NULL,
    sensor_type text NOT NULL,
    value       double precision NOT NULL,
    level       text NOT NULL,
    threshold   double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS factory_alerts_time ON factory_alerts (alert_time);

-- An updating result: each machine's row replaced as its readings come.
CREATE TABLE IF NOT EXISTS machine_health (
    machine_id   text PRIMARY KEY,
    line         text NOT NULL,
    health       text NOT NULL,
    level        integer NOT NULL,
    temperature  double precision,
    vibration    double precision,
    energy       double precision,
    last_reading timestamptz NOT NULL
);

CREATE TABLE IF NOT EXISTS machine_stats_1m (
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    machine_id   text NOT NULL,
    sensor_type  text NOT NULL,
    readings     bigint NOT NULL,
    avg_value    double precision,
    min_value    double precision,
    max_value    double precision,
    PRIMARY KEY (window_start, machine_id, sensor_type)
);
CREATE INDEX IF NOT EXISTS machine_stats_1m_time ON machine_stats_1m (window_start);

-- Host metrics (sql/host_status.sql): per host and minute, and each host's latest status.
CREATE TABLE IF NOT EXISTS host_metrics_1m (
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    host           text NOT NULL,
    samples        bigint NOT NULL,
    cpu_percent    double precision,
    memory_percent double precision,
    disk_percent   double precision,
    net_rx_bytes   bigint,
    net_tx_bytes   bigint,
    status         text NOT NULL,
    PRIMARY KEY (window_start, host)
);

CREATE TABLE IF NOT EXISTS host_status (
    host           text PRIMARY KEY,
    status         text NOT NULL,
    as_of          timestamptz NOT NULL,
    cpu_percent    double precision,
    memory_percent double precision,
    disk_percent   double precision
);

-- Race telemetry (sql/race_laps.sql): speed per car and 5 seconds, lap times, standings.
CREATE TABLE IF NOT EXISTS car_speed_5s (
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    car_id        text NOT NULL,
    positions     bigint NOT NULL,
    avg_speed_kmh double precision,
    max_speed_kmh double precision,
    min_speed_kmh double precision,
    PRIMARY KEY (window_start, car_id)
);

CREATE TABLE IF NOT EXISTS lap_times (
    car_id        text NOT NULL,
    lap           bigint NOT NULL,
    lap_start     timestamptz NOT NULL,
    lap_end       timestamptz NOT NULL,
    lap_ms        bigint NOT NULL,
    top_speed_kmh double precision,
    complete      boolean NOT NULL,
    PRIMARY KEY (car_id, lap)
);

CREATE TABLE IF NOT EXISTS leaderboard (
    place        bigint PRIMARY KEY,
    car_id       text NOT NULL,
    laps_done    bigint NOT NULL,
    total_ms     bigint NOT NULL,
    best_lap_ms  bigint,
    last_lap_end timestamptz
);
