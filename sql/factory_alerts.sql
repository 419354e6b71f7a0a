-- Factory monitoring: each reading at or above its sensor type's warning threshold is an
-- alert, at the level it reached (warning or critical), with an id made of the reading's
-- own number (a reading re-sent by an at-least-once producer gives the same id, so the
-- alert is written once where the id is the key).
-- Reads factory_readings and sensor_thresholds (the thresholds per sensor type: a file
-- with the generators' catalog, a PostgreSQL lookup table, editable while the job runs,
-- with sql/catalog/postgres.sql); writes factory_alerts and factory_alert_events.
--   sluice run sql/factory_alerts.sql --catalog sql/catalog/generators.sql

CREATE VIEW alerts AS
SELECT concat('alert-', CAST(r.reading_id AS TEXT)) AS alert_id,
       r.event_time AS alert_time, r.machine_id, r.line, r.sensor_type, r.value,
       CASE WHEN r.value >= t.critical THEN 'critical' ELSE 'warning' END AS level,
       CASE WHEN r.value >= t.critical THEN t.critical ELSE t.warning END AS threshold
FROM factory_readings r
JOIN sensor_thresholds t ON r.sensor_type = t.sensor_type
WHERE r.value >= t.warning;

-- The alerts table (PostgreSQL: exactly once, keyed by alert id) and the alert events
-- (Kafka: the topic factory_alerts).
INSERT INTO factory_alerts SELECT * FROM alerts;

INSERT INTO factory_alert_events SELECT * FROM alerts;
