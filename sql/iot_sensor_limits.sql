-- Alerts on each sensor's own limit: IoT readings joined to the `sensors` table in
-- PostgreSQL (a lookup table: fetched by sensor id, kept for a minute).
-- Reads iot_sensors and sensors; writes iot_alerts. Needs sql/catalog/postgres.sql:
--   psql "$DATABASE_URL" -f sql/schema.sql   # creates the tables and fills `sensors`
--   sluice run sql/iot_sensor_limits.sql --catalog sql/catalog/generators.sql --catalog sql/catalog/postgres.sql

INSERT INTO iot_alerts
SELECT r.event_time AS alert_time, 'over_sensor_limit' AS kind, r.sensor_id AS entity,
       r.location, r.temperature AS value, s.max_temp AS threshold
FROM iot_sensors r
JOIN sensors s ON r.sensor_id = s.sensor_id
WHERE r.temperature > s.max_temp;
