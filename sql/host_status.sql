-- Host metrics: per host and minute, the average CPU (per core), memory and disk use and
-- the network bytes, with a status: Critical when any of the three is at 95 % or more,
-- Alert when the CPU is at 80 % or memory or disk at 85 %, else Normal; and the latest
-- status of every host (an updating result: a host's row is replaced each minute).
-- Reads host_metrics (this machine's usage with the generators' catalog: run it on each
-- host, or have `sluice generate host-metrics` on each send its samples to Kafka);
-- writes host_metrics_1m and host_status.
--   sluice run sql/host_status.sql --catalog sql/catalog/generators.sql

CREATE VIEW host_minutes AS
SELECT window_start, window_end, host, count(*) AS samples,
       avg(cpu_percent / cpu_cores) AS cpu_percent,
       avg(100.0 * memory_used_bytes / memory_total_bytes) AS memory_percent,
       avg(100.0 * disk_used_bytes / disk_total_bytes) AS disk_percent,
       sum(net_rx_bytes) AS net_rx_bytes, sum(net_tx_bytes) AS net_tx_bytes
FROM TUMBLE(host_metrics, sample_time, INTERVAL '1' MINUTE)
GROUP BY window_start, window_end, host;

CREATE VIEW rated AS
SELECT *,
       CASE WHEN cpu_percent >= 95 OR memory_percent >= 95 OR disk_percent >= 95 THEN 'Critical'
            WHEN cpu_percent >= 80 OR memory_percent >= 85 OR disk_percent >= 85 THEN 'Alert'
            ELSE 'Normal' END AS status
FROM host_minutes;

INSERT INTO host_metrics_1m
SELECT window_start, window_end, host, samples, cpu_percent, memory_percent, disk_percent,
       net_rx_bytes, net_tx_bytes, status
FROM rated;

INSERT INTO host_status
SELECT host, status, window_end AS as_of, cpu_percent, memory_percent, disk_percent
FROM (
    SELECT *, ROW_NUMBER() OVER (PARTITION BY host ORDER BY window_start DESC) AS recency
    FROM rated
)
WHERE recency = 1;
