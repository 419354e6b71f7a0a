//! Golden SQL over Nexmark's streams: every Nexmark query of `benches/nexmark/` (the
//! updating ones write a changelog, replayed before the comparison), and each join shape of `tests/joins/` (window joins inner and
//! outer over TUMBLE, HOP and SESSION, interval joins outer, unions in views, WITH, a window over
//! an earlier window's output), runs as a stream and must equal the same question asked
//! of the same events as a batch (DataFusion over the generated tables, with windows and
//! sessions written out by hand), at parallelism 1 and 3, and again with the process
//! aborted after a checkpoint and restored; one query of each stateful shape is also
//! killed with SIGKILL at random moments. `SLUICE_LONG=1` runs them over more events,
//! with more kills.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/pg.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use sluice_connectors::nexmark::{NexmarkOptions, NexmarkSource};
use sluice_runtime::Source;
use sluice_types::{ConnectorOptions, Position};
use support::{assert_rows_match, batch_rows, read_rows};

/// Events of event time per second: 20,000 events span 100 s, ten 10-second windows.
const EVENT_RATE: &str = "200";

fn events() -> u64 {
    if std::env::var("SLUICE_LONG").is_ok_and(|v| v == "1") {
        200_000
    } else {
        20_000
    }
}

fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../benches/nexmark")
}

/// A Nexmark query (`qN`) or a join shape of `tests/joins/`.
fn query_text(q: &str) -> String {
    let path = if q.starts_with('q') && q[1..].chars().all(|c| c.is_ascii_digit()) {
        bench_dir().join(format!("{q}.sql"))
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/joins/{q}.sql"))
    };
    std::fs::read_to_string(path).unwrap()
}

/// The job: the shared tables, a JSON-lines sink (a changelog with an `op` column when
/// the result is updating), the query.
fn job(q: &str, out: &Path) -> String {
    format!(
        "{}\nCREATE TABLE nexmark_out WITH (connector = 'file', path = '{}', 'changelog.mode' = 'all');\n{}",
        std::fs::read_to_string(bench_dir().join("tables.sql")).unwrap(),
        out.display(),
        query_text(q)
    )
}

fn side_input(dir: &Path) -> PathBuf {
    let path = dir.join("side_input.jsonl");
    let mut text = String::new();
    for k in (0..10_000).step_by(7) {
        text.push_str(&format!("{{\"key\":{k},\"value\":\"v{k}\"}}\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn vars(dir: &Path, rate: &str) -> Vec<(&'static str, String)> {
    vec![
        ("EVENTS", events().to_string()),
        ("EVENT_RATE", EVENT_RATE.to_string()),
        ("RATE", rate.to_string()),
        ("SIDE_INPUT", side_input(dir).display().to_string()),
    ]
}

/// All of one Nexmark table, straight from the source (no stream involved).
fn table(name: &str) -> (Arc<datafusion::arrow::datatypes::Schema>, Vec<RecordBatch>) {
    let mut o = ConnectorOptions::default();
    for (k, v) in [
        ("connector", "nexmark".to_string()),
        ("table", name.to_string()),
        ("events", events().to_string()),
        ("event_rate", EVENT_RATE.to_string()),
        ("disorder", "2s".to_string()),
    ] {
        o.insert(k, v, Position::default());
    }
    let opts = NexmarkOptions::parse(&o).unwrap();
    let schema = opts.table.schema();
    let mut s = NexmarkSource::new(name, opts, schema.clone()).unwrap();
    let mut batches = Vec::new();
    while let Some(b) = s.next_batch().unwrap() {
        batches.push(b);
    }
    (schema, batches)
}

fn oracle_context(dir: &Path) -> SessionContext {
    let ctx = SessionContext::new();
    for name in ["person", "auction", "bid"] {
        let (schema, batches) = table(name);
        ctx.register_table(
            name,
            Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
        )
        .unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(ctx.register_json(
        "side_input",
        side_input(dir).to_str().unwrap(),
        datafusion::prelude::JsonReadOptions::default().file_extension(".jsonl"),
    ))
    .unwrap();
    ctx
}

/// Each query asked of the whole tables at once. Windows are computed from epoch
/// milliseconds; a HOP row belongs to the five windows starting at a multiple of 2 s in
/// (t - 10 s, t]; a session ends where a bidder's next bid is 10 s or more away.
fn oracle_sql(q: &str) -> String {
    if q.starts_with('q') {
        return std::fs::read_to_string(bench_dir().join(format!("oracle/{q}.sql"))).unwrap();
    }
    let sql = match q {
        "window_join_full" => {
            "WITH p AS (SELECT id, ws, count(*) AS n FROM
                    (SELECT id, (CAST(date_time AS BIGINT) / 10000) * 10000 AS ws FROM person) GROUP BY id, ws),
             a AS (SELECT seller, ws, count(*) AS n FROM
                    (SELECT seller, (CAST(date_time AS BIGINT) / 10000) * 10000 AS ws FROM auction) GROUP BY seller, ws)
             SELECT p.id AS person, a.seller AS seller, to_timestamp_millis(p.ws) AS p_start,
                    to_timestamp_millis(a.ws) AS a_start, p.n AS people, a.n AS auctions
             FROM p FULL JOIN a ON p.id = a.seller AND p.ws = a.ws"
        }
        "window_join_left_rows" => {
            "WITH a AS (SELECT id, (CAST(date_time AS BIGINT) / 5000) * 5000 AS ws FROM auction),
             b AS (SELECT auction, price, bidder, (CAST(date_time AS BIGINT) / 5000) * 5000 AS ws FROM bid)
             SELECT a.id, to_timestamp_millis(a.ws) AS window_start, b.price, b.bidder
             FROM a LEFT JOIN b ON a.id = b.auction AND a.ws = b.ws"
        }
        "window_join_right_hop" => {
            "WITH p AS (SELECT DISTINCT id, (CAST(date_time AS BIGINT) / 5000) * 5000 - o.i * 5000 AS ws
                        FROM person CROSS JOIN (VALUES (0), (1)) AS o(i)),
             a AS (SELECT seller, ws, count(*) AS n FROM
                    (SELECT seller, (CAST(date_time AS BIGINT) / 5000) * 5000 - o.i * 5000 AS ws
                     FROM auction CROSS JOIN (VALUES (0), (1)) AS o(i)) GROUP BY seller, ws)
             SELECT p.id, a.seller, to_timestamp_millis(a.ws) AS window_start, a.n
             FROM p RIGHT JOIN a ON p.id = a.seller AND p.ws = a.ws"
        }
        "interval_join_left" => {
            "SELECT a.id, a.date_time AS opened, b.price, b.date_time AS bid_time
             FROM auction a LEFT JOIN bid b ON a.id = b.auction
              AND b.date_time >= a.date_time - INTERVAL '3' SECOND
              AND b.date_time <= a.date_time + INTERVAL '3' SECOND"
        }
        "interval_join_right" => {
            "SELECT p.id, p.date_time AS signed_up, b.auction, b.date_time AS bid_time
             FROM person p RIGHT JOIN bid b ON p.id = b.bidder
              AND p.date_time >= b.date_time - INTERVAL '2' SECOND AND p.date_time <= b.date_time"
        }
        // The same question in DataFusion's batch engine, which runs ROW_NUMBER itself.
        "dedup_first_bid" => {
            "SELECT auction, bidder, date_time FROM (
                SELECT auction, bidder, price, date_time,
                       ROW_NUMBER() OVER (PARTITION BY auction, bidder ORDER BY date_time) AS rn
                FROM bid) WHERE rn = 1"
        }
        "regular_join_column_bound" => {
            "SELECT a.id AS auction, a.seller, b.bidder, b.price, b.date_time AS bid_time
             FROM auction a JOIN bid b ON a.id = b.auction
              AND b.date_time >= a.date_time AND b.date_time <= a.expires
             WHERE b.price > 5000000"
        }
        "union_view_window" => {
            "WITH act AS (SELECT seller AS who, 'auction' AS what, CAST(date_time AS BIGINT) AS t FROM auction
                          UNION ALL SELECT bidder, 'bid', CAST(date_time AS BIGINT) FROM bid)
             SELECT who, to_timestamp_millis(w) AS window_start, n, kinds FROM (
                 SELECT who, (t / 10000) * 10000 AS w, count(*) AS n, count(DISTINCT what) AS kinds
                 FROM act GROUP BY who, (t / 10000) * 10000
                 UNION ALL
                 SELECT who, (t / 30000) * 30000 AS w, count(*) AS n, 0 AS kinds
                 FROM act WHERE what = 'auction' GROUP BY who, (t / 30000) * 30000)"
        }
        "with_window_over_window" => {
            "WITH per10 AS (
                SELECT auction, e AS ten_end, count(*) AS n FROM
                    (SELECT auction, (CAST(date_time AS BIGINT) / 10000) * 10000 + 10000 AS e FROM bid)
                GROUP BY auction, e)
             SELECT to_timestamp_millis(w) AS window_start, auction, bids, busiest FROM (
                SELECT (ten_end / 30000) * 30000 AS w, auction, sum(n) AS bids, max(n) AS busiest
                FROM per10 GROUP BY (ten_end / 30000) * 30000, auction)"
        }
        "window_join_session" => {
            return format!(
                "WITH b AS ({}), h AS ({})
                 SELECT b.bidder, h.bidder AS high_bidder, to_timestamp_millis(b.s) AS b_start,
                        to_timestamp_millis(h.e) AS h_end, b.n AS bids, h.n AS high_bids
                 FROM b FULL JOIN h ON b.bidder = h.bidder AND b.s = h.s AND b.e = h.e",
                session_sql("SELECT bidder, min(ts) AS s, max(ts) + 10000 AS e, count(*) AS n", "TRUE"),
                session_sql("SELECT bidder, min(ts) AS s, max(ts) + 10000 AS e, count(*) AS n", "price > 1000000"),
            );
        }
        "window_join_session_rows" => {
            return format!(
                "WITH n AS ({}), s AS (SELECT bidder, sid, min(ts) AS s, max(ts) + 10000 AS e,
                                        count(*) AS bids, max(price) AS top FROM n GROUP BY bidder, sid)
                 SELECT n.auction, n.bidder, n.price, to_timestamp_millis(s.s) AS window_start,
                        to_timestamp_millis(s.e) AS window_end, s.bids, s.top
                 FROM n JOIN s ON n.bidder = s.bidder AND n.sid = s.sid",
                session_sql("SELECT auction, bidder, price, ts, sid", "TRUE").replace(" GROUP BY bidder, sid", ""),
            );
        }
        "top_bidders_per_window" => {
            "SELECT to_timestamp_millis(ws) AS window_start, bidder, bids, rn FROM (
                SELECT ws, bidder, bids, ROW_NUMBER() OVER (PARTITION BY ws ORDER BY bids DESC, bidder ASC) AS rn
                FROM (SELECT (CAST(date_time AS BIGINT) / 10000) * 10000 AS ws, bidder, count(*) AS bids
                      FROM bid GROUP BY 1, 2))
             WHERE rn <= 3"
        }
        "regular_left_join" => {
            "SELECT P.id, P.name, A.id AS auction, A.category FROM person P LEFT JOIN auction A ON P.id = A.seller"
        }
        "regular_full_join" => {
            "SELECT A.seller, A.id AS auction, B.bidder, B.price
             FROM (SELECT seller, id FROM auction WHERE category = 10) A
             FULL JOIN (SELECT bidder, price FROM bid WHERE price > 9000000) B ON A.seller = B.bidder"
        }
        "running_counts" => {
            "SELECT bidder, count(*) AS bids, sum(price) AS total, max(price) AS top, min(date_time) AS first_bid
             FROM bid GROUP BY bidder"
        }
        "top_bidders_overall" => {
            "SELECT rn, bidder, bids, highest FROM (
                SELECT bidder, bids, highest, ROW_NUMBER() OVER (ORDER BY bids DESC, bidder) AS rn
                FROM (SELECT bidder, count(*) AS bids, max(price) AS highest FROM bid GROUP BY bidder))
             WHERE rn <= 5"
        }
        "counts_of_counts" => {
            "SELECT bids, count(*) AS bidders, max(top) AS top
             FROM (SELECT bidder, count(*) AS bids, max(price) AS top FROM bid GROUP BY bidder)
             GROUP BY bids"
        }
        _ => unreachable!("no oracle for {q}"),
    };
    sql.to_string()
}

/// `select` over bids (those meeting `filter`) numbered by their bidder's 10-second
/// sessions: a session starts where the gap to the bidder's previous bid is 10 s or more.
fn session_sql(select: &str, filter: &str) -> String {
    format!(
        "{select} FROM (
            SELECT auction, bidder, price, ts, sum(fresh) OVER (PARTITION BY bidder ORDER BY ts
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS sid
            FROM (SELECT auction, bidder, price, ts,
                         CASE WHEN ts - lag(ts) OVER (PARTITION BY bidder ORDER BY ts) < 10000 THEN 0 ELSE 1 END AS fresh
                  FROM (SELECT auction, bidder, price, CAST(date_time AS BIGINT) AS ts FROM bid WHERE {filter})))
         GROUP BY bidder, sid"
    )
}

fn expected(q: &str, dir: &Path) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(batch_rows(&oracle_context(dir), &oracle_sql(q)))
}

/// Straight through at parallelism 1 and 3.
fn straight(q: &str) {
    let dir = tempfile::tempdir().unwrap();
    let want = expected(q, dir.path());
    assert!(
        !want.is_empty(),
        "{q}: the oracle has no rows; the test needs data"
    );
    for parallelism in [1, 3] {
        let out = dir.path().join(format!("{q}-{parallelism}.jsonl"));
        // Frequent checkpoints: an updating result puts out its changes at each.
        let sql = format!("SET checkpoint_interval = '10ms';\n{}", job(q, &out));
        // Unpaced, the whole stream may pass before the first barrier, and an updating
        // result then has nothing to take back: retractions are checked in the paced runs.
        support::run_job(&sql, &vars(dir.path(), "0"), parallelism);
        assert_rows_match(
            &format!("{q} at parallelism {parallelism}"),
            &support::replayed(&out),
            &want,
        );
    }
}

/// The job file of a crash test (checkpoints every 100 ms) in `dir`, and the command
/// that runs it paced at `rate` events a second, so that crashes come in the middle of
/// the stream.
fn crash_job(q: &str, dir: &Path, out: &Path, rate: u64) -> impl Fn() -> Command {
    let file = dir.join(format!("{q}.sql"));
    let mut sql = String::from("SET checkpoint_interval = '100ms';\n");
    sql.push_str(&job(q, out));
    std::fs::write(&file, sql).unwrap();
    let dir = dir.to_path_buf();
    move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.current_dir(&dir)
            .args(["run", file.to_str().unwrap(), "--parallelism", "2"])
            .env("SLUICE_LOG", "warn");
        for (k, v) in vars(&dir, &rate.to_string()) {
            cmd.env(k, v);
        }
        cmd
    }
}

/// The last run of a crash test ends the job, and its output equals the oracle.
fn finish_and_check(q: &str, mut cmd: Command, out: &Path, want: &[String]) {
    let last = cmd.output().unwrap();
    assert!(
        last.status.success(),
        "{q}: the restored run failed: {}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert_rows_match(
        &format!("{q} after a restore"),
        &support::replayed(out),
        want,
    );
}

/// Aborted once a checkpoint is durable (before its sink commit), then run again.
fn restored(q: &str) {
    let dir = tempfile::tempdir().unwrap();
    let want = expected(q, dir.path());
    let out = dir.path().join("out.jsonl");
    let cmd = crash_job(q, dir.path(), &out, events() / 2);
    let started = std::time::Instant::now();
    let first = cmd()
        .env("SLUICE_ABORT_AFTER_CHECKPOINT", "4")
        .output()
        .unwrap();
    // The source is paced at `events() / 2` a second: a run aborted in under two seconds
    // was cut before the end of its input, whatever rows it had written by then (a
    // query's rows may all come early, as q2's do).
    let cut_early = started.elapsed() < std::time::Duration::from_secs(2);
    assert!(
        !first.status.success(),
        "{q}: the first run should have been aborted: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let partial = read_rows(&out).len();
    let want_len = if UPDATING.contains(&q) {
        usize::MAX
    } else {
        want.len()
    };
    assert!(
        partial < want_len || want.len() < 10 || cut_early,
        "{q}: the abort came after the end ({partial} rows of {})",
        want.len()
    );
    finish_and_check(q, cmd(), &out, &want);
    assert_takes_back(q, &out, false);
}

/// An updating result's changelog, paced over many barriers, takes rows back (else the
/// test would not exercise updates). A join's retractions depend on which source runs
/// ahead: checked with `joins` only in its killed run, paced longer.
fn assert_takes_back(q: &str, out: &Path, joins: bool) {
    if UPDATING.contains(&q) && (joins || !q.starts_with("regular_")) {
        let text = std::fs::read_to_string(out).unwrap();
        assert!(
            text.contains("\"op\":\"-"),
            "{q}: the changelog takes rows back (the test exercises updates)"
        );
    }
}

/// Killed with SIGKILL at random moments (2 times, 6 with `SLUICE_LONG=1`), restored each
/// time: after every kill the output holds only oracle rows, none twice; at the end all.
fn killed(q: &str) {
    let kills: u64 = if events() > 20_000 { 6 } else { 2 };
    let dir = tempfile::tempdir().unwrap();
    let want = expected(q, dir.path());
    let out = dir.path().join("out.jsonl");
    // Each run gets at most 1.2 s before its kill: the stream lasts twice as long as
    // all of them together.
    let cmd = crash_job(q, dir.path(), &out, events() / (2 * kills));
    let mut seed = q
        .bytes()
        .fold(0x5eed_u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    for k in 0..kills {
        let after = support::random_pause(&mut seed, 300, 900);
        let mut child = cmd().spawn().unwrap();
        std::thread::sleep(after);
        assert!(
            child.try_wait().unwrap().is_none(),
            "{q}: the job ended before kill {k}; the test needs a longer stream"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let seen = support::replayed(&out);
        if UPDATING.contains(&q) {
            // An updating result's rows mid-stream are not final: each row is once.
            let mut unique = seen.clone();
            unique.dedup();
            assert_eq!(unique.len(), seen.len(), "{q} after kill {k}: a row twice");
        } else {
            support::assert_rows_within(&format!("{q} after kill {k}"), &seen, &want);
        }
    }
    finish_and_check(q, cmd(), &out, &want);
    assert_takes_back(q, &out, true);
}

/// Nexmark's updating queries into a PostgreSQL table keyed by each result's key (an
/// upsert per change, a delete per retraction, in the epoch's transaction), killed once
/// with SIGKILL and restored: the table equals the batch result.
fn upserted(q: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let want = expected(q, dir.path());
    let db = pg::fresh_database(&format!("nexmark_{q}"));
    let file = dir.path().join(format!("{q}.sql"));
    let sql = format!(
        "SET checkpoint_interval = '50ms';\n{}\nCREATE TABLE nexmark_out WITH (connector = 'postgres', url = '{db}', table = 'nexmark_out', primary_key = '{key}');\n{}",
        std::fs::read_to_string(bench_dir().join("tables.sql")).unwrap(),
        query_text(q)
    );
    std::fs::write(&file, sql).unwrap();
    let cmd = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sluice"));
        cmd.current_dir(dir.path())
            .args(["run", file.to_str().unwrap(), "--parallelism", "2"])
            .args(["--name", q, "--checkpoint-dir"])
            .arg(dir.path().join("checkpoints"))
            .env("SLUICE_LOG", "warn");
        for (k, v) in vars(dir.path(), &(events() / 2).to_string()) {
            cmd.env(k, v);
        }
        cmd
    };
    let mut child = cmd().spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "{q}: ended before the kill"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let last = cmd().output().unwrap();
    assert!(
        last.status.success(),
        "{q}: the restored run failed: {}",
        String::from_utf8_lossy(&last.stderr)
    );
    assert_rows_match(
        &format!("{q} upserted into PostgreSQL"),
        &pg::pg_table_rows(&db, "nexmark_out"),
        &want,
    );
}

/// Each updating Nexmark query with the key of its result.
mod upserted {
    #[test]
    fn q4() {
        super::upserted("q4", "category");
    }
    #[test]
    fn q9() {
        super::upserted("q9", "id");
    }
    #[test]
    fn q15() {
        super::upserted("q15", "day");
    }
    #[test]
    fn q16() {
        super::upserted("q16", "channel, day");
    }
    #[test]
    fn q17() {
        super::upserted("q17", "auction, day");
    }
    #[test]
    fn q18() {
        super::upserted("q18", "bidder, auction");
    }
    #[test]
    fn q19() {
        super::upserted("q19", "auction, rank_number");
    }
    #[test]
    fn top_bidders_overall() {
        super::upserted("top_bidders_overall", "rn");
    }
}

/// The queries whose result is updating (their output is a changelog).
const UPDATING: &[&str] = &[
    "q4",
    "q9",
    "q15",
    "q16",
    "q17",
    "q18",
    "q19",
    "running_counts",
    "counts_of_counts",
    "top_bidders_overall",
    "regular_left_join",
    "regular_full_join",
];

macro_rules! nexmark {
    ($($q:ident),*) => {
        mod straight {
            $(#[test] fn $q() { super::straight(stringify!($q)); })*
        }
        mod restored {
            $(#[test] fn $q() { super::restored(stringify!($q)); })*
        }
    };
}

/// One query of each stateful shape, killed at random moments.
mod killed {
    #[test]
    fn q3_regular_join() {
        super::killed("q3");
    }
    #[test]
    fn q5_window_over_window() {
        super::killed("q5");
    }
    #[test]
    fn window_join_full() {
        super::killed("window_join_full");
    }
    #[test]
    fn window_join_session_rows() {
        super::killed("window_join_session_rows");
    }
    #[test]
    fn interval_join_left() {
        super::killed("interval_join_left");
    }
    #[test]
    fn dedup_first_bid() {
        super::killed("dedup_first_bid");
    }
    #[test]
    fn q4_aggregate_over_updating_aggregate() {
        super::killed("q4");
    }
    #[test]
    fn counts_of_counts() {
        super::killed("counts_of_counts");
    }
    #[test]
    fn q19_top_n() {
        super::killed("q19");
    }
    #[test]
    fn top_n_over_updating_aggregate() {
        super::killed("top_bidders_overall");
    }
    #[test]
    fn regular_left_join() {
        super::killed("regular_left_join");
    }
}

nexmark!(
    q0,
    q1,
    q2,
    q3,
    q4,
    q5,
    q7,
    q8,
    q9,
    q11,
    q13,
    q14,
    q15,
    q16,
    q17,
    q18,
    q19,
    q20,
    q21,
    q22,
    window_join_full,
    window_join_left_rows,
    window_join_right_hop,
    window_join_session,
    window_join_session_rows,
    interval_join_left,
    interval_join_right,
    regular_join_column_bound,
    dedup_first_bid,
    union_view_window,
    with_window_over_window,
    running_counts,
    counts_of_counts,
    top_bidders_overall,
    top_bidders_per_window,
    regular_left_join,
    regular_full_join
);
