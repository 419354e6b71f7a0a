-- 5-minute tumbling aggregate per location, with a HAVING and a CASE.
CREATE TABLE iot (
    sensor_id     TEXT NOT NULL,
    location      TEXT NOT NULL,
    temperature   DOUBLE,
    battery_level DOUBLE,
    event_time    TIMESTAMP NOT NULL,
    WATERMARK FOR event_time AS event_time - INTERVAL '1' MINUTE
) WITH (connector = 'file', path = '${DIR}/iot.jsonl', batch_size = '2');

CREATE TABLE out WITH (connector = 'file', path = '${OUT}');

INSERT INTO out
SELECT window_start, window_end, location,
       count(*) AS readings,
       avg(temperature) AS avg_temperature,
       max(temperature) AS max_temperature,
       min(battery_level) AS min_battery,
       CASE WHEN max(temperature) > 30 THEN 'hot' ELSE 'ok' END AS status
FROM TUMBLE(iot, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, location
HAVING count(*) >= 2;
