-- Per 5-minute tumbling window: readings, temperature, humidity, pressure and the lowest
-- battery per location, and the lowest battery per sensor.
-- Reads iot_sensors; writes sensor_metrics_5m and sensor_battery_5m. The catalog says
-- where from and to (sql/catalog/): sluice run sql/iot_aggregates.sql --catalog sql/catalog/generators.sql

INSERT INTO sensor_metrics_5m
SELECT window_start, window_end, location,
       count(*) AS readings,
       round(avg(temperature), 2) AS avg_temperature,
       min(temperature) AS min_temperature,
       max(temperature) AS max_temperature,
       round(avg(humidity), 2) AS avg_humidity,
       round(avg(pressure), 2) AS avg_pressure,
       min(battery_level) AS min_battery
FROM TUMBLE(iot_sensors, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, location;

INSERT INTO sensor_battery_5m
SELECT window_start, window_end, sensor_id, location, min(battery_level) AS min_battery
FROM TUMBLE(iot_sensors, event_time, INTERVAL '5' MINUTE)
GROUP BY window_start, window_end, sensor_id, location;
