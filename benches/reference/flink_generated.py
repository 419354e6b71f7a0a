"""Flink's side of the `generated` benchmark: datagen -> the same TUMBLE job -> blackhole.

The reference the performance issue measures Sluice's generated-input job against, on
the same machine in the same minutes. It needs Flink (PyFlink from PyPI carries Flink's
jars) and a JDK:

    python3 -m venv /tmp/flink && /tmp/flink/bin/pip install apache-flink==2.3.0
    /tmp/flink/bin/python benches/reference/flink_generated.py --events 10000000,40000000

Events are 1 ms apart in event time (a sequence), over 1,000 sensors, as Sluice's IoT
generator makes them; windows of 5 minutes per sensor give count, avg, min and max of a
temperature. Each size runs as its own job in a local cluster at parallelism 1 and prints its wall
time and the JVM's CPU seconds; the marginal rate between two sizes leaves out start-up.
Before timing, a small run's windows are collected and checked (every event counted once,
in the windows and sensors it belongs to), so a job that computed nothing cannot pass.
"""

import argparse
import json
import os
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

T0_MS = 1_714_564_800_000
KEYS = 1000
WINDOW_MS = 300_000


def source_sql(events: int, int_keys: bool = False) -> str:
    # With --int-keys the sensor is its number, not text: Flink's cheapest form of the job.
    sensor_id = "sensor" if int_keys else "CONCAT('sensor-', CAST(sensor AS STRING))"
    return f"""
CREATE TEMPORARY TABLE iot (
    seq BIGINT,
    sensor INT,
    temperature DOUBLE,
    sensor_id AS {sensor_id},
    event_time AS TO_TIMESTAMP_LTZ({T0_MS} + seq, 3),
    WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE
) WITH (
    'connector' = 'datagen',
    'number-of-rows' = '{events}',
    'rows-per-second' = '1000000000',
    'fields.seq.kind' = 'sequence',
    'fields.seq.start' = '0',
    'fields.seq.end' = '{events - 1}',
    'fields.sensor.min' = '0',
    'fields.sensor.max' = '{KEYS - 1}',
    'fields.temperature.min' = '10',
    'fields.temperature.max' = '40'
)"""


QUERY = """
SELECT window_start, window_end, sensor_id,
       COUNT(*) AS readings, AVG(temperature) AS avg_t,
       MIN(temperature) AS min_t, MAX(temperature) AS max_t
FROM TABLE(TUMBLE(TABLE iot, DESCRIPTOR(event_time), INTERVAL '5' MINUTE))
GROUP BY window_start, window_end, sensor_id"""


def environment() -> TableEnvironment:
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.exec.resource.default-parallelism", "1")
    conf.set("table.local-time-zone", "UTC")
    return env


def jvm_cpu_seconds() -> float:
    """CPU seconds of this process's Java children (the gateway running the cluster)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def check(events: int) -> None:
    """A small run's windows: every event counted once, in the windows and over the sensors
    its sequence and key range give, with readings in the drawn range (datagen draws other
    values on each run, so the shape is what can be checked, not the values)."""
    env = environment()
    env.execute_sql(source_sql(events))
    got = {}
    with env.execute_sql(QUERY).collect() as rows:
        for r in rows:
            got[(r[0], r[2])] = (r[3], r[5], r[6])
    windows = {w for w, _ in got}
    expected_windows = (events + WINDOW_MS - 1) // WINDOW_MS
    counts = sum(v[0] for v in got.values())
    assert counts == events, f"the windows count {counts} events of {events}"
    assert len(windows) == expected_windows, f"{len(windows)} windows, want {expected_windows}"
    assert len({k for _, k in got}) == KEYS, "not every sensor has a window"
    assert all(10 <= lo <= hi <= 40 for _, lo, hi in got.values()), "a reading out of range"
    print(json.dumps({"check": "ok", "events": events, "window_rows": len(got)}), flush=True)


def timed(events: int, int_keys: bool) -> dict:
    env = environment()
    env.execute_sql(source_sql(events, int_keys))
    env.execute_sql(
        """CREATE TEMPORARY TABLE sink (
            window_start TIMESTAMP(3), window_end TIMESTAMP(3), sensor_id {key},
            readings BIGINT, avg_t DOUBLE, min_t DOUBLE, max_t DOUBLE
        ) WITH ('connector' = 'blackhole')""".format(key="INT" if int_keys else "STRING")
    )
    cpu0, t0 = jvm_cpu_seconds(), time.monotonic()
    env.execute_sql("INSERT INTO sink " + QUERY).wait()
    wall, cpu = time.monotonic() - t0, jvm_cpu_seconds() - cpu0
    return {"engine": "flink", "events": events, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", default="10000000,40000000")
    p.add_argument("--check-events", type=int, default=1_000_000)
    p.add_argument("--int-keys", action="store_true")
    a = p.parse_args()
    check(a.check_events)
    runs = [timed(int(n), a.int_keys) for n in a.events.split(",")]
    for r in runs:
        print(json.dumps(r), flush=True)
    if len(runs) == 2:
        (s, l) = runs
        d = l["events"] - s["events"]
        print(json.dumps({
            "engine": "flink",
            "marginal_events_per_s": round(d / (l["wall_s"] - s["wall_s"])),
            "marginal_events_per_cpu_s": round(d / (l["cpu_s"] - s["cpu_s"])),
        }), flush=True)


if __name__ == "__main__":
    main()
