-- The current state of every sensor, always up to date: readings deduplicated by their
-- reading_id (an at-least-once producer may send one twice), the latest reading of each
-- sensor (an updating result: each sensor's row is replaced as newer readings arrive),
-- and a running count of readings per location.
-- Reads iot_sensors; writes sensor_latest and location_readings (updating results: the
-- PostgreSQL catalog upserts them on their keys; the generators' catalog writes their
-- changelogs, with an op column).

-- Reading ids seen, sensors and locations are forgotten after an hour of event time
-- without news (a sensor silent that long leaves sensor_latest): the state stays flat.
SET state.ttl = '1 hour';

CREATE VIEW readings AS
SELECT sensor_id, location, temperature, humidity, pressure, battery_level, event_time, reading_id
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY reading_id ORDER BY event_time) AS copy
    FROM iot_sensors
)
WHERE copy = 1;

INSERT INTO sensor_latest
SELECT sensor_id, location, temperature, humidity, pressure, battery_level,
       event_time AS reading_time, reading_id
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor_id ORDER BY event_time DESC, reading_id DESC) AS recency
    FROM readings
)
WHERE recency = 1;

INSERT INTO location_readings
SELECT location, count(*) AS readings, max(event_time) AS last_reading
FROM readings
GROUP BY location;
