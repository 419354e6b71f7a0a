-- Race telemetry: each car's speed per 5-second window; its lap times (a lap's time runs
-- from its first position to its last, final once the watermark has passed the lap);
-- and the leaderboard: the first five places by complete laps done, then by their total
-- time (an updating top N: a car completing a lap may take a place from another, and each
-- place's row is updated; a lap is complete when the car's positions in it span the
-- track: the first lap from the grid, or the last of a stream that ends mid-lap, are not).
-- Reads race_positions; writes car_speed_5s, lap_times and leaderboard.
--   sluice run sql/race_laps.sql --catalog sql/catalog/generators.sql

INSERT INTO car_speed_5s
SELECT window_start, window_end, car_id, count(*) AS positions,
       avg(speed_kmh) AS avg_speed_kmh, max(speed_kmh) AS max_speed_kmh,
       min(speed_kmh) AS min_speed_kmh
FROM TUMBLE(race_positions, event_time, INTERVAL '5' SECOND)
GROUP BY window_start, window_end, car_id;

-- A lap's positions come every 100 ms: one session per car and lap.
CREATE VIEW laps AS
SELECT car_id, lap, min(event_time) AS lap_start, max(event_time) AS lap_end,
       CAST(max(event_time) AS BIGINT) - CAST(min(event_time) AS BIGINT) AS lap_ms,
       max(speed_kmh) AS top_speed_kmh,
       max(lap_progress) - min(lap_progress) >= 0.97 AS complete
FROM SESSION(race_positions, event_time, INTERVAL '1' SECOND)
GROUP BY window_start, window_end, car_id, lap;

INSERT INTO lap_times SELECT * FROM laps;

-- Each car's standing: complete laps, their total and best time (updating).
CREATE VIEW standings AS
SELECT car_id, count(*) AS laps_done, sum(lap_ms) AS total_ms, min(lap_ms) AS best_lap_ms,
       max(lap_end) AS last_lap_end
FROM laps
WHERE complete
GROUP BY car_id;

INSERT INTO leaderboard
SELECT place, car_id, laps_done, total_ms, best_lap_ms, last_lap_end FROM (
    SELECT car_id, laps_done, total_ms, best_lap_ms, last_lap_end,
           ROW_NUMBER() OVER (ORDER BY laps_done DESC, total_ms, car_id) AS place
    FROM standings)
WHERE place <= 5;
