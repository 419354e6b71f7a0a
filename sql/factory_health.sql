-- Factory monitoring: the health of every machine, always current (an updating result:
-- a machine's row is replaced as its readings come), from the newest reading of each of
-- its sensors: its worst level now (ok, warning, critical) and those readings; and each
-- machine's statistics per sensor type and minute.
-- Reads factory_readings and sensor_thresholds; writes machine_health and
-- machine_stats_1m.
--   sluice run sql/factory_health.sql --catalog sql/catalog/generators.sql

-- Machines silent for an hour of event time leave machine_health.
SET state.ttl = '1 hour';

CREATE VIEW leveled AS
SELECT r.machine_id, r.line, r.sensor_type, r.value, r.event_time, r.reading_id,
       CASE WHEN r.value >= t.critical THEN 2 WHEN r.value >= t.warning THEN 1 ELSE 0 END AS level
FROM factory_readings r
JOIN sensor_thresholds t ON r.sensor_type = t.sensor_type;

CREATE VIEW newest AS
SELECT machine_id, line, sensor_type, value, event_time, level
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY machine_id, sensor_type
                                 ORDER BY event_time DESC, reading_id DESC) AS recency
    FROM leveled
)
WHERE recency = 1;

INSERT INTO machine_health
SELECT machine_id, max(line) AS line,
       CASE max(level) WHEN 2 THEN 'critical' WHEN 1 THEN 'warning' ELSE 'ok' END AS health,
       max(level) AS level,
       max(CASE WHEN sensor_type = 'temperature' THEN value END) AS temperature,
       max(CASE WHEN sensor_type = 'vibration' THEN value END) AS vibration,
       max(CASE WHEN sensor_type = 'energy' THEN value END) AS energy,
       max(event_time) AS last_reading
FROM newest
GROUP BY machine_id;

INSERT INTO machine_stats_1m
SELECT window_start, window_end, machine_id, sensor_type, count(*) AS readings,
       avg(value) AS avg_value, min(value) AS min_value, max(value) AS max_value
FROM TUMBLE(factory_readings, event_time, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, machine_id, sensor_type;
