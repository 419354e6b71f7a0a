-- Stateless: filter, CASE, scalar functions and casts, row by row in input order.
CREATE TABLE iot (
    sensor_id     TEXT NOT NULL,
    location      TEXT NOT NULL,
    temperature   DOUBLE,
    battery_level DOUBLE,
    event_time    TIMESTAMP NOT NULL
) WITH (connector = 'file', path = '${DIR}/iot.jsonl');

CREATE TABLE alerts (
    alert_time TIMESTAMP,
    kind       TEXT,
    entity     TEXT,
    value      DOUBLE,
    threshold  BIGINT
) WITH (connector = 'file', path = '${OUT}');

INSERT INTO alerts
SELECT event_time,
       CASE WHEN temperature > 30 THEN 'high_temperature' ELSE 'low_battery' END,
       upper(sensor_id) || '@' || location,
       CASE WHEN temperature > 30 THEN temperature ELSE battery_level END,
       CAST(CASE WHEN temperature > 30 THEN 30 ELSE 15 END AS INT)
FROM iot
WHERE temperature > 30 OR battery_level < 15;
