const READINGS: &str = "sensor_id TEXT NOT NULL, location TEXT NOT NULL, temperature DOUBLE,
    event_time TIMESTAMP NOT NULL, WATERMARK FOR event_time AS event_time - INTERVAL '1' MINUTE";

/// Why `body` cannot be split by partition (`None`: it can), over two topics keyed
/// by `sensor_id`.
fn refusal(body: &str) -> Option<String> {
    let kafka = |topic: &str| {
        format!(
            "connector = 'kafka', topic = '{topic}', 'bootstrap.servers' = 'localhost:1', 'key.fields' = 'sensor_id'"
        )
    };
    let sql = format!(
        "CREATE TABLE r ({READINGS}) WITH ({});
         CREATE TABLE s ({READINGS}) WITH ({});
         CREATE TABLE out WITH (connector = 'blackhole');
         {body}",
        kafka("a"),
        kafka("b")
    );
    let graph = crate::engine::plan(&sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
    let keys: Vec<Option<String>> = graph
        .sources
        .iter()
        .map(|s| s.def.options.get("key.fields").map(str::to_string))
        .collect();
    sluice_runtime::check_partition_local(&graph.nodes, &graph.edges, &keys)
        .err()
        .map(|e| e.to_string())
}

#[test]
fn stages_keyed_by_the_topic_key_need_no_shuffle() {
    for body in [
        "INSERT INTO out SELECT window_start, sensor_id, avg(temperature) AS t
         FROM TUMBLE(r, event_time, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, sensor_id",
        // A key that holds the topic's key, after a filter and a projection.
        "INSERT INTO out SELECT sensor_id, location, count(*) AS n
         FROM (SELECT sensor_id, location, temperature * 2 AS t2 FROM r WHERE temperature > 0)
         GROUP BY sensor_id, location",
        // Windows over windows, per sensor.
        "CREATE VIEW per_minute AS SELECT window_start AS minute, sensor_id, max(temperature) AS hi
         FROM TUMBLE(r, event_time, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, sensor_id;
         INSERT INTO out SELECT sensor_id, count(*) AS minutes FROM per_minute GROUP BY sensor_id",
        // Two topics keyed alike, joined on their key.
        "INSERT INTO out SELECT r.sensor_id, r.temperature, s.temperature AS other
         FROM r JOIN s ON r.sensor_id = s.sensor_id
         AND s.event_time BETWEEN r.event_time - INTERVAL '1' SECOND AND r.event_time",
        // No state at all.
        "INSERT INTO out SELECT sensor_id, temperature FROM r WHERE temperature > 30",
    ] {
        assert_eq!(refusal(body), None, "{body}");
    }
}

/// The columns the rows of the tables a job reads, `r` and `s` (over topics keyed by
/// nothing), are shuffled by, comma-separated, or why there are none.
fn shuffle_columns(body: &str) -> Result<String, String> {
    let sql = format!(
        "CREATE TABLE r ({READINGS}) WITH (connector = 'kafka', topic = 'a', 'bootstrap.servers' = 'localhost:1');
         CREATE TABLE s ({READINGS}) WITH (connector = 'kafka', topic = 'b', 'bootstrap.servers' = 'localhost:1');
         CREATE TABLE out WITH (connector = 'blackhole');
         {body}"
    );
    let graph = crate::engine::plan(&sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
    super::shuffle::shuffle_columns(&graph)
        .map(|c| c.join(","))
        .map_err(|e| e.to_string())
}

#[test]
fn a_job_keyed_otherwise_is_shuffled_by_a_column_every_keyed_stage_keeps() {
    for (body, column) in [
        (
            "INSERT INTO out SELECT window_start, location, avg(temperature) AS t
             FROM TUMBLE(r, event_time, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, location",
            "location",
        ),
        // Both columns key every stage: the first in the table's order.
        (
            "INSERT INTO out SELECT location, sensor_id, count(*) AS n FROM r GROUP BY location, sensor_id",
            "sensor_id",
        ),
        // Windows over windows, each keeping the location.
        (
            "CREATE VIEW per_minute AS SELECT window_start AS minute, sensor_id, location, max(temperature) AS hi
             FROM TUMBLE(r, event_time, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, sensor_id, location;
             INSERT INTO out SELECT location, count(*) AS minutes FROM per_minute GROUP BY location",
            "location",
        ),
        // Two topics, each shuffled by the column the join's key takes from it.
        (
            "INSERT INTO out SELECT r.location, r.temperature, s.temperature AS other
             FROM r JOIN s ON r.location = s.location
             AND s.event_time BETWEEN r.event_time - INTERVAL '1' SECOND AND r.event_time",
            "location,location",
        ),
        (
            "INSERT INTO out SELECT r.location, s.sensor_id
             FROM r JOIN s ON r.location = s.sensor_id
             AND s.event_time BETWEEN r.event_time - INTERVAL '1' SECOND AND r.event_time",
            "location,sensor_id",
        ),
        // Two topics in one aggregate.
        (
            "CREATE VIEW both AS SELECT * FROM r UNION ALL SELECT * FROM s;
             INSERT INTO out SELECT window_start, location, count(*) AS n
             FROM TUMBLE(both, event_time, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, location",
            "location,location",
        ),
    ] {
        assert_eq!(shuffle_columns(body).as_deref(), Ok(column), "{body}");
    }
    let why = shuffle_columns("INSERT INTO out SELECT count(*) AS n FROM r").unwrap_err();
    assert!(why.contains("no column of table r"), "{why}");
}

#[test]
fn stages_keyed_otherwise_are_refused_with_the_stage() {
    for body in [
        "INSERT INTO out SELECT window_start, location, avg(temperature) AS t
         FROM TUMBLE(r, event_time, INTERVAL '1' MINUTE) GROUP BY window_start, window_end, location",
        "INSERT INTO out SELECT count(*) AS n FROM r",
        // The key renamed on the way is not followed: refused rather than guessed.
        "INSERT INTO out SELECT s, count(*) AS n FROM (SELECT sensor_id || '' AS s FROM r) GROUP BY s",
        "INSERT INTO out SELECT r.location, r.temperature, s.temperature AS other
         FROM r JOIN s ON r.location = s.location
         AND s.event_time BETWEEN r.event_time - INTERVAL '1' SECOND AND r.event_time",
    ] {
        let why = refusal(body).unwrap_or_else(|| panic!("accepted: {body}"));
        assert!(why.contains("key"), "{why}");
    }
}
