-- Race telemetry on the console's live map: every car's position as it comes (a table
-- that keeps nothing; watch it in the console, which draws rows with lat and lon on a
-- map: http://127.0.0.1:8080/#/jobs/race_map/live/car_positions?beside=race_laps/leaderboard
-- puts the standings of the race_laps job beside it).
-- Reads race_positions; writes car_positions.

CREATE TABLE car_positions WITH (connector = 'blackhole');

INSERT INTO car_positions
SELECT car_id, lap, lat, lon, speed_kmh, event_time
FROM race_positions;
