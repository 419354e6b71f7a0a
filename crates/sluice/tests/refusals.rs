//! SQL the engine cannot run as a stream is refused before the job starts, with the
//! line and column of the offending part and a sentence saying why.
#![allow(clippy::unwrap_used)]

use sluice_types::Position;

const SOURCE: &str = "CREATE TABLE iot (
    sensor_id TEXT NOT NULL,
    temperature DOUBLE,
    event_time TIMESTAMP NOT NULL,
    seen_at TIMESTAMP,
    WATERMARK FOR event_time AS event_time - INTERVAL '10' MINUTE
) WITH (connector = 'file', path = '/dev/null');
CREATE TABLE out WITH (connector = 'console');
";

/// Plans SOURCE + `tail`; returns (line relative to `tail`'s first line, column, message).
fn refusal(tail: &str) -> (u64, u64, String) {
    let sql = format!("{SOURCE}{tail}");
    let err = sluice::plan_with_env(&sql, &|_| None).unwrap_err();
    let Position { line, column } = err.position().expect("a refusal has a position");
    let offset = SOURCE.lines().count() as u64;
    (line.saturating_sub(offset), column, err.to_string())
}

#[test]
fn order_by_is_refused_where_it_stands() {
    let (line, col, msg) =
        refusal("INSERT INTO out\nSELECT sensor_id FROM iot\nORDER BY sensor_id;");
    assert_eq!((line, col), (3, 10), "{msg}");
    assert!(
        msg.contains("ORDER BY cannot run on an unbounded stream"),
        "{msg}"
    );
}

#[test]
fn limit_is_refused() {
    let (line, col, msg) = refusal("INSERT INTO out SELECT sensor_id FROM iot LIMIT 10;");
    assert_eq!(line, 1, "{msg}");
    assert!(col >= 43, "{msg}");
    assert!(
        msg.contains("LIMIT cannot run on an unbounded stream"),
        "{msg}"
    );
}

#[test]
fn updating_results_into_sinks_that_cannot_take_them_are_refused() {
    let query = "SELECT sensor_id, count(*) AS n FROM iot\nGROUP BY sensor_id;";
    for (sink, want) in [
        (
            "connector = 'file', path = '/tmp/x.jsonl'",
            "add 'changelog.mode' = 'all'",
        ),
        (
            "connector = 'postgres', url = 'postgres://localhost/x'",
            "only with a primary key, so that each change updates or deletes its row: add 'primary_key' = '…' (the result's key: sensor_id)",
        ),
        (
            "connector = 'postgres', url = 'postgres://localhost/x', primary_key = 'n'",
            "primary_key (n) must be the updating result's key (sensor_id)",
        ),
        (
            "connector = 'kafka', topic = 't', 'bootstrap.servers' = 'localhost:9092'",
            "'changelog.mode' = 'upsert'",
        ),
        ("connector = 'blackhole'", ""),
        (
            "connector = 'file', path = '/tmp/x.jsonl', 'changelog.mode' = 'all'",
            "",
        ),
        (
            "connector = 'kafka', topic = 't', 'bootstrap.servers' = 'localhost:9092', format = 'debezium-json'",
            "",
        ),
    ] {
        let sql =
            format!("{SOURCE}CREATE TABLE counts WITH ({sink});\nINSERT INTO counts\n{query}");
        match sluice::plan_with_env(&sql, &|_| None) {
            Ok(graph) => {
                assert!(want.is_empty(), "{sink}: planned, but should say {want}");
                let text = graph.explain();
                assert!(
                    text.contains("-> updating")
                        && text.contains("updating: inserts, updates and deletes"),
                    "{text}"
                );
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!want.is_empty(), "{sink}: {msg}");
                assert!(msg.contains("the query's result is updating"), "{msg}");
                assert!(msg.contains(want), "{sink}: {msg}");
                let p = e.position().unwrap();
                assert_eq!(
                    (p.line as usize, p.column),
                    (SOURCE.lines().count() + 2, 13),
                    "{msg}"
                );
            }
        }
    }
}

#[test]
fn a_join_over_an_updating_result_is_refused_and_a_top_n_over_one_is_updating() {
    let counts = "(SELECT sensor_id, count(*) AS n, max(event_time) AS event_time FROM iot GROUP BY sensor_id)";
    let (_, _, msg) = refusal(&format!(
        "INSERT INTO out SELECT a.sensor_id FROM {counts} a JOIN iot b ON a.sensor_id = b.sensor_id;"
    ));
    assert!(msg.contains("a join over an updating result"), "{msg}");
    // A leaderboard: the best three counts, ranked; each rank's row is updated.
    let sql = format!(
        "{SOURCE}CREATE TABLE board WITH (connector = 'file', path = '/tmp/b', 'changelog.mode' = 'all');
         INSERT INTO board SELECT sensor_id, n, rn FROM (SELECT sensor_id, n, ROW_NUMBER() OVER (ORDER BY n DESC, sensor_id) AS rn FROM {counts}) WHERE rn <= 3;"
    );
    let text = sluice::plan_with_env(&sql, &|_| None).unwrap().explain();
    assert!(
        text.contains("top 3 per key")
            && text.contains("over a changelog")
            && text.contains("-> updating"),
        "{text}"
    );
}

#[test]
fn window_over_column_without_watermark_is_refused() {
    let (line, col, msg) = refusal(
        "INSERT INTO out\nSELECT window_start, count(*) FROM TUMBLE(iot, seen_at, INTERVAL '5' MINUTE)\nGROUP BY window_start;",
    );
    assert_eq!((line, col), (2, 48), "{msg}");
    assert!(msg.contains("must be over the event-time column"), "{msg}");
}

#[test]
fn window_on_table_without_watermark_is_refused() {
    let sql = "CREATE TABLE t (a TEXT, ts TIMESTAMP) WITH (connector = 'file', path = 'x');
CREATE TABLE out WITH (connector = 'console');
INSERT INTO out SELECT window_start, count(*) FROM TUMBLE(t, ts, INTERVAL '1' MINUTE) GROUP BY window_start;";
    let err = sluice::plan_with_env(sql, &|_| None).unwrap_err();
    assert_eq!(err.position(), Some(Position::new(3, 62)), "{err}");
    assert!(err.to_string().contains("has no watermark"), "{err}");
}

#[test]
fn unknown_connector_is_refused_at_its_option() {
    let sql = "CREATE TABLE t (a TEXT) WITH (connector = 'file', path = 'x');
CREATE TABLE out WITH (
  connector = 'kafak'
);
INSERT INTO out SELECT a FROM t;";
    let err = sluice::plan_with_env(sql, &|_| None).unwrap_err();
    assert_eq!(err.position(), Some(Position::new(3, 3)), "{err}");
    assert!(
        err.to_string().contains("unknown connector 'kafak'"),
        "{err}"
    );
}

#[test]
fn unknown_option_is_refused_at_its_key() {
    let sql = "CREATE TABLE t (a TEXT) WITH (connector = 'file', path = 'x', 'colour' = 'red');
CREATE TABLE out WITH (connector = 'console');
INSERT INTO out SELECT a FROM t;";
    let err = sluice::plan_with_env(sql, &|_| None).unwrap_err();
    assert_eq!(err.position(), Some(Position::new(1, 63)), "{err}");
    assert!(err.to_string().contains("unknown option 'colour'"), "{err}");
}

#[test]
fn type_mismatch_with_declared_sink_is_refused_at_the_select_item() {
    let sql = "CREATE TABLE t (a TEXT, ts TIMESTAMP) WITH (connector = 'file', path = 'x');
CREATE TABLE out (n BIGINT, at TIMESTAMP) WITH (connector = 'console');
INSERT INTO out SELECT a, ts FROM t;";
    let err = sluice::plan_with_env(sql, &|_| None).unwrap_err();
    assert_eq!(err.position(), Some(Position::new(3, 24)), "{err}");
    assert!(
        err.to_string()
            .contains("type mismatch: column n of out is BIGINT but the SELECT gives TEXT"),
        "{err}"
    );
}

#[test]
fn type_error_in_expression_is_refused() {
    let (line, _col, msg) = refusal("INSERT INTO out SELECT sensor_id - 1 FROM iot;");
    assert_eq!(line, 1, "{msg}");
    assert!(!msg.is_empty());
}

#[test]
fn unknown_column_is_refused_with_position() {
    let (line, col, msg) = refusal("INSERT INTO out\nSELECT humidity FROM iot;");
    assert_eq!((line, col), (2, 8), "{msg}");
    assert!(msg.contains("humidity"), "{msg}");
}

#[test]
fn syntax_error_has_position() {
    let (line, _col, msg) = refusal("INSERT INTO out SELEC sensor_id FROM iot;");
    assert_eq!(line, 1, "{msg}");
    assert!(msg.contains("syntax error"), "{msg}");
}

#[test]
fn a_valid_job_plans() {
    let sql = format!(
        "{SOURCE}INSERT INTO out SELECT window_start, window_end, sensor_id, avg(temperature) AS t
         FROM HOP(iot, event_time, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)
         GROUP BY window_start, window_end, sensor_id HAVING avg(temperature) > 30;"
    );
    let graph = sluice::plan_with_env(&sql, &|_| None).unwrap();
    assert_eq!(graph.inserts.len(), 1);
    assert!(
        graph
            .explain()
            .contains("HOP(slide=60000ms, size=300000ms)")
    );
    let names: Vec<_> = graph.inserts[0]
        .output_schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["window_start", "window_end", "sensor_id", "t"]);
}

#[test]
fn unknown_setting_is_refused_and_parallelism_is_read() {
    let (line, col, msg) =
        refusal("SET checkpoint_intervall = '2s';\nINSERT INTO out SELECT sensor_id FROM iot;");
    assert_eq!((line, col), (1, 5), "{msg}");
    assert!(
        msg.contains("unknown setting 'checkpoint_intervall'"),
        "{msg}"
    );
    let (_, _, msg) =
        refusal("SET parallelism = 'many';\nINSERT INTO out SELECT sensor_id FROM iot;");
    assert!(msg.contains("parallelism must be a whole number"), "{msg}");
    let sql = format!("{SOURCE}SET parallelism = 3;\nINSERT INTO out SELECT sensor_id FROM iot;");
    let graph = sluice::plan_with_env(&sql, &|_| None).unwrap();
    assert_eq!(graph.setting("parallelism"), Some("3"));
}

#[test]
fn aggregate_unsupported_for_its_type_is_refused_before_start() {
    let (line, _col, msg) = refusal(
        "INSERT INTO out SELECT window_start, approx_distinct(temperature)
         FROM TUMBLE(iot, event_time, INTERVAL '5' MINUTE) GROUP BY window_start;",
    );
    assert_eq!(line, 2, "{msg}");
    assert!(msg.contains("approx_distinct"), "{msg}");
    assert!(msg.contains("Float64 is not implemented"), "{msg}");
}

/// Options that depend on the columns written, or on a value's form, are checked when the
/// job is planned (what `/validate` accepts, the job can start with).
#[test]
fn sink_options_are_checked_against_the_columns_written() {
    let cases = [
        (
            "CREATE TABLE k WITH (connector = 'kafka', topic = 't', 'bootstrap.servers' = 'b:9092',\n    key = 'sensor');\nINSERT INTO k SELECT sensor_id, temperature FROM iot;",
            2,
            "key column 'sensor' is not one of the columns the job writes (sensor_id, temperature)",
        ),
        (
            "CREATE TABLE p WITH (connector = 'postgres', url = 'postgres://h/db',\n    primary_key = 'sensor_id, window');\nINSERT INTO p SELECT sensor_id, temperature FROM iot;",
            2,
            "primary_key column 'window' is not one of the columns the job writes",
        ),
        (
            "CREATE TABLE k2 (id TEXT) WITH (connector = 'kafka', topic = 't',\n    'bootstrap.servers' = 'b:9092', idle_timeout = 'soon');\nINSERT INTO out SELECT id FROM k2;",
            2,
            "idle_timeout: 'soon' is not an interval",
        ),
        (
            "CREATE TABLE k3 (id TEXT) WITH (connector = 'kafka', topic = 't',\n    'bootstrap.servers' = 'b:9092', batch_size = '0');\nINSERT INTO out SELECT id FROM k3;",
            2,
            "batch_size must be a positive whole number, not '0'",
        ),
        (
            "CREATE TABLE k4 WITH (connector = 'kafka', topic = 't', 'bootstrap.servers' = 'b:9092',\n    'sink.delivery-guarantee' = 'twice');\nINSERT INTO k4 SELECT sensor_id FROM iot;",
            2,
            "'sink.delivery-guarantee' must be 'at-least-once' or 'exactly-once'",
        ),
    ];
    for (tail, want_line, want) in cases {
        let (line, _col, msg) = refusal(tail);
        assert!(msg.contains(want), "{msg}");
        assert_eq!(line, want_line, "{msg}");
    }
}

/// A second stream for joins, and a table without a watermark.
const MORE: &str = "CREATE TABLE sensors (
    sensor_id TEXT NOT NULL,
    max_temp DOUBLE,
    changed_at TIMESTAMP NOT NULL,
    WATERMARK FOR changed_at AS changed_at - INTERVAL '1' MINUTE
) WITH (connector = 'file', path = '/dev/null');
";

/// Plans SOURCE + MORE + `tail`, as [`refusal`] does.
fn join_refusal(tail: &str) -> (u64, u64, String) {
    let (line, col, msg) = refusal(&format!("{MORE}{tail}"));
    (line.saturating_sub(MORE.lines().count() as u64), col, msg)
}

#[test]
fn an_anti_join_without_a_time_bound_is_refused_and_an_outer_one_is_updating() {
    let (line, col, msg) = join_refusal(
        "INSERT INTO out\nSELECT r.sensor_id FROM iot r\nLEFT ANTI JOIN sensors s ON r.sensor_id = s.sensor_id;",
    );
    assert_eq!((line, col), (3, 16), "{msg}");
    assert!(msg.contains("an anti join) without a time bound"), "{msg}");
    let sql = format!(
        "{SOURCE}{MORE}INSERT INTO out\nSELECT r.sensor_id, s.max_temp FROM iot r\nLEFT JOIN sensors s ON r.sensor_id = s.sensor_id;"
    );
    let text = sluice::plan_with_env(&sql, &|_| None).unwrap().explain();
    assert!(
        text.contains("Left regular join") && text.contains("-> updating"),
        "{text}"
    );
}

#[test]
fn a_window_join_of_different_windows_is_refused() {
    let (line, col, msg) = join_refusal(
        "INSERT INTO out
SELECT a.sensor_id, b.max_temp
FROM TUMBLE(iot, event_time, INTERVAL '1' MINUTE) a
JOIN TUMBLE(sensors, changed_at, INTERVAL '5' MINUTE) b
  ON a.sensor_id = b.sensor_id AND a.window_start = b.window_start;",
    );
    assert_eq!((line, col), (4, 6), "{msg}");
    assert!(msg.contains("must use the same window"), "{msg}");
    assert!(msg.contains("TUMBLE(size=60000ms)"), "{msg}");
}

#[test]
fn a_join_without_an_equality_is_refused() {
    let (_, _, msg) = join_refusal(
        "INSERT INTO out\nSELECT r.sensor_id FROM iot r JOIN sensors s ON r.temperature > s.max_temp;",
    );
    assert!(
        msg.contains("needs an equality between the two sides"),
        "{msg}"
    );
}

#[test]
fn a_regular_join_plans_and_says_its_state_is_unbounded() {
    let sql = format!(
        "{SOURCE}{MORE}INSERT INTO out SELECT r.sensor_id, r.temperature, s.max_temp
         FROM iot r JOIN sensors s ON r.sensor_id = s.sensor_id WHERE r.temperature > s.max_temp;"
    );
    let graph = sluice::plan_with_env(&sql, &|_| None).unwrap();
    let text = graph.explain();
    assert!(
        text.contains("Inner regular join (state unbounded"),
        "{text}"
    );
    assert!(text.contains("note: the join at"), "{text}");
    let with_ttl = format!("SET state.ttl = '1 hour';\n{sql}");
    let text = sluice::plan_with_env(&with_ttl, &|_| None)
        .unwrap()
        .explain();
    assert!(
        text.contains("rows kept for 3600000ms of event time"),
        "{text}"
    );
    assert!(!text.contains("note: the join at"), "{text}");
}

#[test]
fn a_lookup_table_is_only_joined_to_a_stream() {
    let lookup = "CREATE TABLE limits (sensor_id TEXT NOT NULL, max_temp DOUBLE)
        WITH (connector = 'postgres', url = 'postgres://nobody@127.0.0.1:1/db', table = 'limits');\n";
    let plan = |tail: &str| sluice::plan_with_env(&format!("{SOURCE}{lookup}{tail}"), &|_| None);
    // Joined to the stream, it plans as a lookup join.
    let g = plan(
        "INSERT INTO out SELECT r.sensor_id, l.max_temp FROM iot r LEFT JOIN limits l ON r.sensor_id = l.sensor_id;",
    )
    .unwrap();
    assert!(g.explain().contains("lookup join"), "{}", g.explain());
    for (tail, want) in [
        (
            "INSERT INTO out SELECT sensor_id FROM limits;",
            "not written to a sink",
        ),
        (
            "INSERT INTO out SELECT window_start, count(*) FROM TUMBLE(limits, max_temp, INTERVAL '1' MINUTE) GROUP BY window_start, window_end;",
            "not windowed",
        ),
        (
            "INSERT INTO out SELECT l.max_temp FROM limits l JOIN iot r ON r.sensor_id = l.sensor_id;",
            "put the table on the right",
        ),
        (
            "INSERT INTO out SELECT r.sensor_id FROM iot r FULL JOIN limits l ON r.sensor_id = l.sensor_id;",
            "INNER JOIN or LEFT JOIN",
        ),
        (
            "INSERT INTO out SELECT r.sensor_id, r.window_end, count(*) FROM SESSION(iot, event_time, INTERVAL '1' MINUTE) r
             JOIN limits l ON r.sensor_id = l.sensor_id GROUP BY r.sensor_id, r.window_start, r.window_end;",
            "before looking them up",
        ),
    ] {
        let err = plan(tail).unwrap_err().to_string();
        assert!(err.contains(want), "{tail}: {err}");
        assert!(err.contains("line "), "{tail}: {err}");
    }
}

#[test]
fn a_session_window_join_on_window_start_alone_is_refused() {
    let (line, col, msg) = join_refusal(
        "INSERT INTO out
SELECT a.sensor_id, b.max_temp
FROM SESSION(iot, event_time, INTERVAL '1' MINUTE) a
JOIN SESSION(sensors, changed_at, INTERVAL '1' MINUTE) b
  ON a.sensor_id = b.sensor_id AND a.window_start = b.window_start;",
    );
    assert_eq!((line, col), (4, 6), "{msg}");
    assert!(msg.contains("must equate window_end"), "{msg}");
}

#[test]
fn a_session_window_join_plans_a_session_assignment_per_side() {
    let sql = format!(
        "{SOURCE}{MORE}INSERT INTO out
SELECT a.sensor_id, a.temperature, b.max_temp, a.window_end
FROM SESSION(iot, event_time, INTERVAL '1' MINUTE) a
LEFT JOIN SESSION(sensors, changed_at, INTERVAL '1' MINUTE) b
  ON a.sensor_id = b.sensor_id AND a.window_start = b.window_start AND a.window_end = b.window_end;"
    );
    let text = sluice::plan_with_env(&sql, &|_| None).unwrap().explain();
    assert_eq!(
        text.matches("session assignment (gap 60000ms").count(),
        2,
        "{text}"
    );
    assert!(text.contains("Left window join"), "{text}");
}

#[test]
fn a_filter_on_a_session_bound_before_the_session_closes_is_refused() {
    let (line, _, msg) = refusal(
        "INSERT INTO out
SELECT sensor_id, window_end, count(*) FROM SESSION(iot, event_time, INTERVAL '1' MINUTE)
WHERE window_end > TIMESTAMP '2024-01-01 00:00:00'
GROUP BY sensor_id, window_start, window_end;",
    );
    assert!(line >= 1, "{msg}");
    assert!(msg.contains("only known when the session closes"), "{msg}");
}

#[test]
fn a_time_bound_from_an_ordinary_column_makes_a_regular_join_with_a_filter() {
    let sql = format!(
        "{SOURCE}{MORE}INSERT INTO out SELECT r.sensor_id, r.temperature, s.max_temp
         FROM iot r JOIN sensors s ON r.sensor_id = s.sensor_id
          AND s.changed_at BETWEEN r.event_time AND r.seen_at;"
    );
    let text = sluice::plan_with_env(&sql, &|_| None).unwrap().explain();
    assert!(text.contains("Inner regular join"), "{text}");
    assert!(text.contains(" where "), "{text}");
    assert!(!text.contains("interval join"), "{text}");
}

#[test]
fn window_functions_other_than_row_number_top_n_are_refused() {
    for (tail, want) in [
        (
            "INSERT INTO out SELECT sensor_id, sum(temperature) OVER (PARTITION BY sensor_id) FROM iot;",
            "only as ROW_NUMBER() filtered to the first rows per key",
        ),
        (
            "INSERT INTO out SELECT sensor_id FROM (SELECT sensor_id, ROW_NUMBER() OVER (PARTITION BY sensor_id ORDER BY event_time) AS rn FROM iot) WHERE rn > 3;",
            "only as ROW_NUMBER() filtered to the first rows per key",
        ),
        (
            "INSERT INTO out SELECT sensor_id FROM (SELECT sensor_id, ROW_NUMBER() OVER (PARTITION BY sensor_id ORDER BY event_time) AS rn FROM iot) WHERE rn <= 100000;",
            "at most 10000 rows per key",
        ),
    ] {
        let (line, _, msg) = refusal(tail);
        assert_eq!(line, 1, "{tail}: {msg}");
        assert!(msg.contains(want), "{tail}: {msg}");
    }
    // Each shape plans as what it is.
    for (select, want) in [
        (
            "ORDER BY event_time) AS rn FROM iot) WHERE rn = 1",
            "first row per key by event_time",
        ),
        (
            "ORDER BY event_time DESC) AS rn FROM iot) WHERE rn = 1",
            "top 1 per key by [event_time@2 DESC",
        ),
        (
            "ORDER BY temperature DESC) AS rn FROM iot) WHERE rn <= 3",
            "top 3 per key by [temperature@1 DESC",
        ),
    ] {
        let sql = format!(
            "{SOURCE}INSERT INTO out SELECT sensor_id, temperature FROM (SELECT sensor_id, temperature,
               ROW_NUMBER() OVER (PARTITION BY sensor_id {select};"
        );
        let text = sluice::plan_with_env(&sql, &|_| None).unwrap().explain();
        assert!(text.contains(want), "{text}");
    }
}
