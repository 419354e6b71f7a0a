//! Join behaviour beyond equality with an oracle: a regular join's state is bounded by
//! `SET state.ttl` (and the rows it holds show in the metrics), and an interval join
//! counts and drops rows that come after the watermark.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::read_rows;

fn tables(events: u64) -> String {
    let with = |t: &str| {
        format!(
            "connector = 'nexmark', table = '{t}', events = '{events}', event_rate = '1000', rate = '20000', disorder = '1s'"
        )
    };
    format!(
        "CREATE TABLE auction (id BIGINT NOT NULL, seller BIGINT NOT NULL, date_time TIMESTAMP NOT NULL,
             WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND) WITH ({});
         CREATE TABLE bid (auction BIGINT NOT NULL, price BIGINT NOT NULL, date_time TIMESTAMP NOT NULL,
             WATERMARK FOR date_time AS date_time - INTERVAL '2' SECOND) WITH ({});",
        with("auction"),
        with("bid")
    )
}

/// Runs `sql`, sampling the rows its joins hold; returns the most seen.
fn most_rows_held(sql: &str, out: &std::path::Path) -> u64 {
    let run = support::build_job(sql, &[("OUT", out.display().to_string())], 2);
    let metrics = run.handle.metrics.clone();
    let job = std::thread::spawn(move || run.run());
    let mut most = 0;
    while !job.is_finished() {
        most = most.max(metrics.snapshot().join_rows_held);
        std::thread::sleep(Duration::from_millis(20));
    }
    job.join().unwrap().unwrap();
    most
}

#[test]
fn a_ttl_bounds_a_regular_joins_state_and_the_rows_held_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let query = "CREATE TABLE out WITH (connector = 'file', path = '${OUT}');
        INSERT INTO out SELECT b.auction, b.price, a.seller FROM bid b JOIN auction a ON b.auction = a.id;";
    let events = 40_000; // 40 s of event time, paced over 2 s
    let unbounded = most_rows_held(
        &format!("{}{query}", tables(events)),
        &dir.path().join("all.jsonl"),
    );
    let bounded = most_rows_held(
        &format!("SET state.ttl = '4s';\n{}{query}", tables(events)),
        &dir.path().join("ttl.jsonl"),
    );
    assert!(
        unbounded > 20_000,
        "without a TTL the join keeps (nearly) every row: {unbounded}"
    );
    assert!(
        bounded * 3 < unbounded,
        "a 4 s TTL over 40 s of events holds far fewer rows: {bounded} against {unbounded}"
    );
    // A TTL only takes matches away.
    let all = read_rows(&dir.path().join("all.jsonl"));
    let ttl = read_rows(&dir.path().join("ttl.jsonl"));
    assert!(
        !ttl.is_empty() && ttl.len() <= all.len(),
        "{} rows with a TTL, {} without",
        ttl.len(),
        all.len()
    );
    let mut pool: HashMap<&String, usize> = HashMap::new();
    for r in &all {
        *pool.entry(r).or_default() += 1;
    }
    for r in &ttl {
        let n = pool.get_mut(r).filter(|n| **n > 0);
        assert!(
            n.is_some(),
            "a row the join without a TTL did not give: {r}"
        );
        if let Some(n) = n {
            *n -= 1;
        }
    }
}

#[test]
fn an_interval_join_counts_and_drops_rows_behind_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let mut lines: Vec<String> = (0..=10)
        .map(|i| format!("{{\"k\":1,\"t\":{}}}", 1_700_000_000_000i64 + i * 10_000))
        .collect();
    // 95 s behind the newest row: long past the 1-second watermark delay.
    lines.push(format!(
        "{{\"k\":1,\"t\":{}}}",
        1_700_000_000_000i64 + 5_000
    ));
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let sql = format!(
        "CREATE TABLE a (k BIGINT NOT NULL, t TIMESTAMP NOT NULL, WATERMARK FOR t AS t - INTERVAL '1' SECOND)
             WITH (connector = 'file', path = '{}', batch_size = '1');
         CREATE TABLE out WITH (connector = 'file', path = '{}');
         INSERT INTO out SELECT x.t AS t1, y.t AS t2 FROM a x JOIN a y
             ON x.k = y.k AND y.t BETWEEN x.t - INTERVAL '1' SECOND AND x.t + INTERVAL '1' SECOND;",
        input.display(),
        out.display()
    );
    let metrics = support::run_job(&sql, &[], 1);
    let rows = read_rows(&out);
    // Each on-time row meets itself; the late one meets nothing and is counted.
    assert_eq!(rows.len(), 11, "{rows:#?}");
    assert!(rows.iter().all(|r| !r.contains("00:05")), "{rows:#?}");
    assert!(metrics.late >= 1, "the late row is counted: {metrics:?}");
}

#[test]
fn window_joins_over_tumble_and_session_count_and_drop_rows_behind_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    // One row every 10 s, then one 95 s behind the newest: each on-time row is alone in
    // its 5-second window and in its 2-second session.
    let mut lines: Vec<String> = (0..=10)
        .map(|i| format!("{{\"k\":1,\"t\":{}}}", 1_700_000_000_000i64 + i * 10_000))
        .collect();
    lines.push(format!(
        "{{\"k\":1,\"t\":{}}}",
        1_700_000_000_000i64 + 5_000
    ));
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    for window in [
        "TUMBLE(a, t, INTERVAL '5' SECOND)",
        "SESSION(a, t, INTERVAL '2' SECOND)",
    ] {
        let out = dir.path().join(format!("out-{}.jsonl", &window[..3]));
        let sql = format!(
            "CREATE TABLE a (k BIGINT NOT NULL, t TIMESTAMP NOT NULL, WATERMARK FOR t AS t - INTERVAL '1' SECOND)
                 WITH (connector = 'file', path = '{}', batch_size = '1');
             CREATE TABLE out WITH (connector = 'file', path = '{}');
             INSERT INTO out SELECT x.t AS t1, y.t AS t2, x.window_start, x.window_end
             FROM {window} x JOIN {window} y
               ON x.k = y.k AND x.window_start = y.window_start AND x.window_end = y.window_end;",
            input.display(),
            out.display()
        );
        let metrics = support::run_job(&sql, &[], 1);
        let rows = read_rows(&out);
        // Each on-time row meets itself in its window; the late one is dropped and counted.
        assert_eq!(rows.len(), 11, "{window}: {rows:#?}");
        let late_row = "t1=\"2023-11-14T22:13:25";
        assert!(
            rows.iter().all(|r| !r.contains(late_row)),
            "{window}: {rows:#?}"
        );
        assert!(metrics.late >= 1, "{window}: {metrics:?}");
    }
}
