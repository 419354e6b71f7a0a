-- Alerts: every reading above 30 °C, and every sensor whose battery is below 20 % in a
-- 5-minute window. Each alert has its time, kind, entity, location, value and threshold.
-- Reads iot_sensors; writes iot_alerts (sql/catalog/ says where).

INSERT INTO iot_alerts
SELECT event_time AS alert_time, 'high_temperature' AS kind, sensor_id AS entity, location,
       temperature AS value, 30.0 AS threshold
FROM iot_sensors
WHERE temperature > 30;

INSERT INTO iot_alerts
SELECT window_end AS alert_time, 'low_battery' AS kind, sensor_id AS entity, location,
       min(battery_level) AS value, 20.0 AS threshold
FROM TUMBLE(iot_sensors, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, sensor_id, location
HAVING min(battery_level) < 20;
