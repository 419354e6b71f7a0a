"""Flink's side of the Nexmark bid queries from JSON lines: the same files Sluice reads.

`cargo run --profile bench-fast -p sluice-benches -- nexmark --events N --input json`
writes the bids to `$TMPDIR/sluice-bench-nexmark-N/bid.jsonl`; this runs the
stateless bid queries (q0, q1, q2, q22, as `benches/nexmark/` writes them) over that file
in Flink 2.3 at parallelism 1 into a blackhole, prints wall time and the JVM's CPU
seconds, and checks each query's row count against the same query collected as a
count (q0, q1 and q22 keep every bid; q2 must keep some, and the note compares its
count with Sluice's):

    /tmp/flink/bin/python benches/reference/flink_nexmark.py --events 10000000

See `flink_generated.py` for installing PyFlink. Events per second count the whole
stream (bids, auctions and people), as Sluice's benchmark and Nexmark do.
"""

import argparse
import json
import os
import tempfile
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

from flink_generated import jvm_cpu_seconds

QUERIES = {
    "q0": ("auction BIGINT, bidder BIGINT, price BIGINT, date_time TIMESTAMP_LTZ(3)",
           "SELECT auction, bidder, price, date_time FROM bid"),
    "q1": ("auction BIGINT, bidder BIGINT, price DOUBLE, date_time TIMESTAMP_LTZ(3)",
           "SELECT auction, bidder, 0.908E0 * price AS price, date_time FROM bid"),
    "q2": ("auction BIGINT, price BIGINT",
           "SELECT auction, price FROM bid WHERE auction = 1007 OR auction = 1020 "
           "OR auction = 2001 OR auction = 2019 OR auction = 2087"),
    "q22": ("auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, "
            "dir1 STRING, dir2 STRING, dir3 STRING",
            "SELECT auction, bidder, price, channel, "
            "SPLIT_INDEX(url, '/', 3) AS dir1, SPLIT_INDEX(url, '/', 4) AS dir2, "
            "SPLIT_INDEX(url, '/', 5) AS dir3 FROM bid"),
}


def environment(path: str, batch: bool = False) -> TableEnvironment:
    settings = EnvironmentSettings.in_batch_mode() if batch else EnvironmentSettings.in_streaming_mode()
    env = TableEnvironment.create(settings)
    conf = env.get_config()
    conf.set("parallelism.default", "1")
    conf.set("table.exec.resource.default-parallelism", "1")
    conf.set("table.local-time-zone", "UTC")
    # The files' times end in `Z` (RFC 3339), which Flink's JSON reads as TIMESTAMP_LTZ.
    env.execute_sql(f"""
CREATE TEMPORARY TABLE bid (
    auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING,
    date_time TIMESTAMP_LTZ(3), extra STRING,
    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND
) WITH (
    'connector' = 'filesystem', 'path' = '{path}', 'format' = 'json',
    'json.timestamp-format.standard' = 'ISO-8601', 'json.fail-on-missing-field' = 'true'
)""")
    return env


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--queries", default="q0,q1,q2,q22")
    a = p.parse_args()
    path = os.path.join(tempfile.gettempdir(), f"sluice-bench-nexmark-{a.events}", "bid.jsonl")
    with open(path, "rb") as f:
        bids = sum(1 for _ in f)
    for q in a.queries.split(","):
        columns, select = QUERIES[q]
        # The check counts in batch mode (one row back, not a changelog of counts).
        env = environment(path, batch=True)
        with env.execute_sql(f"SELECT COUNT(*) FROM ({select})").collect() as rows:
            want = [r[0] for r in rows][-1]
        expect = bids if q != "q2" else None
        assert want > 0 and (expect is None or want == expect), f"{q}: {want} rows of {bids} bids"
        env = environment(path)
        env.execute_sql(f"CREATE TEMPORARY TABLE nexmark_out ({columns}) WITH ('connector' = 'blackhole')")
        cpu0, t0 = jvm_cpu_seconds(), time.monotonic()
        env.execute_sql(f"INSERT INTO nexmark_out {select}").wait()
        wall, cpu = time.monotonic() - t0, jvm_cpu_seconds() - cpu0
        print(json.dumps({
            "engine": "flink", "query": q, "events": a.events, "bids": bids, "rows": want,
            "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "events_per_s": round(a.events / wall), "events_per_cpu_s": round(a.events / cpu),
        }), flush=True)


if __name__ == "__main__":
    main()
