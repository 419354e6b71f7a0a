//! The PostgreSQL sink against a real server (SLUICE_TEST_DATABASE_URL): every Arrow
//! type a job writes lands as PostgreSQL reads it, through binary COPY where the table's
//! columns take it (a table the sink creates, or one with `timestamp` and `varchar`
//! columns) and through text COPY where they do not (a `numeric` column), with the same
//! values either way; an upsert keeps each key's last row of an epoch, also where two
//! Arrow keys are one key to PostgreSQL.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/pg.rs"]
mod pg;

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Date64Array, Float32Array, Float64Array,
    Int8Array, Int64Array, StringArray, StringViewArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt16Array,
    UInt32Array, UInt64Array,
};
use datafusion::arrow::record_batch::RecordBatch;
use pg::{fresh_database, rt};
use serde_json::{Value, json};
use sluice_connectors::postgres::PostgresSink;
use sluice_runtime::EpochStore;
use sluice_types::{ConnectorOptions, Epoch, Position};
use sqlx::{Connection, PgConnection, Row};

fn sink(url: &str, table: &str, key: Option<&str>, batch: &RecordBatch) -> PostgresSink {
    let mut options = ConnectorOptions::default();
    options.insert("url", url.to_string(), Position::default());
    options.insert("table", table.to_string(), Position::default());
    if let Some(k) = key {
        options.insert("primary_key", k.to_string(), Position::default());
    }
    let mut sink = PostgresSink::open(table, &options, batch.schema()).unwrap();
    sink.open("types", table).unwrap();
    sink
}

fn execute(url: &str, sql: &str) {
    rt().block_on(async {
        let mut c = PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
    });
}

/// The rows of `select`, as JSON objects in `k` order.
fn rows(url: &str, select: &str) -> Vec<Value> {
    rt().block_on(async {
        let mut c = PgConnection::connect(url).await.unwrap();
        sqlx::raw_sql("SET TIME ZONE 'UTC'")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query(&format!(
            "SELECT row_to_json(t)::text FROM ({select}) t ORDER BY t.k"
        ))
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.get::<String, _>(0)).unwrap())
        .collect()
    })
}

/// Three rows: extremes and text that needs escaping, all nulls, times before 1970.
fn typed_batch() -> RecordBatch {
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("k", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
        (
            "b",
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
        ),
        (
            "i8",
            Arc::new(Int8Array::from(vec![Some(-128), None, Some(127)])),
        ),
        (
            "u16",
            Arc::new(UInt16Array::from(vec![Some(65_535), None, Some(0)])),
        ),
        (
            "u32",
            Arc::new(UInt32Array::from(vec![Some(u32::MAX), None, Some(7)])),
        ),
        (
            "i64",
            Arc::new(Int64Array::from(vec![
                Some(-9_007_199_254_740_993),
                None,
                Some(0),
            ])),
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![Some(1.5), None, Some(-0.25)])),
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![Some(-2.25), None, Some(1e-3)])),
        ),
        (
            "ts_s",
            Arc::new(TimestampSecondArray::from(vec![Some(0), None, Some(-1)])),
        ),
        (
            "ts_ms",
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(946_684_800_001),
                None,
                Some(-1),
            ])),
        ),
        (
            "ts_us",
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_714_566_896_789_012), None, Some(1)])
                    .with_timezone("+02:00"),
            ),
        ),
        (
            "ts_ns",
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(1_714_566_896_789_012_499),
                None,
                Some(1_714_566_896_789_012_600),
            ])),
        ),
        (
            "d32",
            Arc::new(Date32Array::from(vec![Some(-1), None, Some(19_844)])),
        ),
        (
            "d64",
            Arc::new(Date64Array::from(vec![Some(86_400_000), None, Some(0)])),
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![
                Some("tab\t nl\n bs\\ é"),
                None,
                Some(""),
            ])),
        ),
        (
            "sv",
            Arc::new(StringViewArray::from(vec![
                Some("a view longer than twelve"),
                None,
                Some("v"),
            ])),
        ),
        (
            "bin",
            Arc::new(BinaryArray::from(vec![
                Some(&[0u8, 255][..]),
                None,
                Some(&[][..]),
            ])),
        ),
    ];
    RecordBatch::try_from_iter(cols).unwrap()
}

const TYPED_SELECT: &str = "SELECT k, b, i8, u16, u32, i64, f32, f64::float8 AS f64, \
    ts_s AT TIME ZONE 'UTC' AS ts_s, ts_ms::timestamptz AT TIME ZONE 'UTC' AS ts_ms, \
    ts_us AT TIME ZONE 'UTC' AS ts_us, ts_ns AT TIME ZONE 'UTC' AS ts_ns, d32, d64, s, \
    sv::text AS sv, encode(bin, 'hex') AS bin FROM ";

fn typed_expected() -> Vec<Value> {
    vec![
        json!({"k": "a", "b": true, "i8": -128, "u16": 65535, "u32": 4294967295u64,
            "i64": -9007199254740993i64, "f32": 1.5, "f64": -2.25,
            "ts_s": "1970-01-01T00:00:00", "ts_ms": "2000-01-01T00:00:00.001",
            "ts_us": "2024-05-01T12:34:56.789012", "ts_ns": "2024-05-01T12:34:56.789012",
            "d32": "1969-12-31", "d64": "1970-01-02", "s": "tab\t nl\n bs\\ é",
            "sv": "a view longer than twelve", "bin": "00ff"}),
        json!({"k": "b", "b": null, "i8": null, "u16": null, "u32": null, "i64": null,
            "f32": null, "f64": null, "ts_s": null, "ts_ms": null, "ts_us": null,
            "ts_ns": null, "d32": null, "d64": null, "s": null, "sv": null, "bin": null}),
        json!({"k": "c", "b": false, "i8": 127, "u16": 0, "u32": 7, "i64": 0,
            "f32": -0.25, "f64": 0.001, "ts_s": "1969-12-31T23:59:59",
            "ts_ms": "1969-12-31T23:59:59.999", "ts_us": "1970-01-01T00:00:00.000001",
            "ts_ns": "2024-05-01T12:34:56.789013", "d32": "2024-05-01", "d64": "1970-01-01",
            "s": "", "sv": "v", "bin": ""}),
    ]
}

#[test]
fn every_type_lands_the_same_through_binary_and_text_copy() {
    let url = fresh_database("pg_types");
    let batch = typed_batch();
    // A table the sink creates; one made beforehand with `timestamp` and `varchar`
    // (still binary); one with a `numeric` column (text).
    let columns = "k text, b boolean, i8 smallint, u16 integer, u32 bigint, i64 bigint, \
        f32 real, f64 FLOAT64, ts_s timestamptz, ts_ms TS_MS, ts_us timestamptz, \
        ts_ns timestamptz, d32 date, d64 date, s S, sv text, bin bytea";
    let made = |table: &str, f64: &str, ts_ms: &str, s: &str| {
        let cols = columns
            .replace("FLOAT64", f64)
            .replace("TS_MS", ts_ms)
            .replace(" S,", &format!(" {s},"));
        execute(&url, &format!("CREATE TABLE {table} ({cols})"));
    };
    made(
        "typed_plain",
        "double precision",
        "timestamp",
        "varchar(64)",
    );
    made("typed_numeric", "numeric", "timestamptz", "text");
    for (table, binary) in [
        ("typed_created", true),
        ("typed_plain", true),
        ("typed_numeric", false),
    ] {
        let mut s = sink(&url, table, None, &batch);
        assert_eq!(s.binary_copy(), binary, "{table}");
        s.commit_epoch(Epoch(1), std::slice::from_ref(&batch))
            .unwrap();
        // Committed before: nothing written twice.
        s.commit_epoch(Epoch(1), std::slice::from_ref(&batch))
            .unwrap();
        assert_eq!(
            rows(&url, &format!("{TYPED_SELECT}{table}")),
            typed_expected(),
            "{table}"
        );
    }
    // A type written only as text (unsigned 64-bit, to `numeric`) sends the whole table
    // as text.
    let wide = RecordBatch::try_from_iter([
        ("k", Arc::new(StringArray::from(vec!["a"])) as ArrayRef),
        ("n", Arc::new(UInt64Array::from(vec![u64::MAX])) as ArrayRef),
    ])
    .unwrap();
    let mut s = sink(&url, "typed_u64", None, &wide);
    assert!(!s.binary_copy());
    s.commit_epoch(Epoch(1), &[wide]).unwrap();
    assert_eq!(
        rows(&url, "SELECT k, n::text AS n FROM typed_u64"),
        vec![json!({"k": "a", "n": "18446744073709551615"})]
    );
}

#[test]
fn an_upsert_keeps_each_keys_last_row_of_the_epoch() {
    let url = fresh_database("pg_upsert_last");
    let batch = |keys: Vec<&str>, values: Vec<i64>| {
        RecordBatch::try_from_iter([
            ("k", Arc::new(StringArray::from(keys)) as ArrayRef),
            ("v", Arc::new(Int64Array::from(values)) as ArrayRef),
        ])
        .unwrap()
    };
    let table = "last_rows";
    let first = [
        batch(vec!["x", "y", "x"], vec![1, 2, 3]),
        batch(vec!["y", "z"], vec![4, 5]),
    ];
    let mut s = sink(&url, table, Some("k"), &first[0]);
    s.commit_epoch(Epoch(1), &first).unwrap();
    assert_eq!(
        rows(&url, "SELECT k, v FROM last_rows"),
        vec![
            json!({"k": "x", "v": 3}),
            json!({"k": "y", "v": 4}),
            json!({"k": "z", "v": 5})
        ]
    );
    assert_eq!(s.direct_epochs(), 1, "new keys go straight into the table");
    s.commit_epoch(Epoch(2), &[batch(vec!["z", "x", "z"], vec![6, 7, 8])])
        .unwrap();
    assert_eq!(
        rows(&url, "SELECT k, v FROM last_rows"),
        vec![
            json!({"k": "x", "v": 7}),
            json!({"k": "y", "v": 4}),
            json!({"k": "z", "v": 8})
        ]
    );
    assert_eq!(s.direct_epochs(), 1, "keys already there take the stage");
    // After a conflict the next epoch takes the stage without trying; the one after
    // tries again, and a key already there among new ones still takes the stage.
    s.commit_epoch(Epoch(3), &[batch(vec!["w"], vec![9])])
        .unwrap();
    s.commit_epoch(Epoch(4), &[batch(vec!["v"], vec![10])])
        .unwrap();
    assert_eq!(s.direct_epochs(), 2);
    s.commit_epoch(Epoch(5), &[batch(vec!["u", "y"], vec![11, 12])])
        .unwrap();
    assert_eq!(s.direct_epochs(), 2);
    assert_eq!(
        rows(&url, "SELECT k, v FROM last_rows"),
        vec![
            json!({"k": "u", "v": 11}),
            json!({"k": "v", "v": 10}),
            json!({"k": "w", "v": 9}),
            json!({"k": "x", "v": 7}),
            json!({"k": "y", "v": 12}),
            json!({"k": "z", "v": 8})
        ]
    );
    // An epoch committed before is skipped whichever way it went.
    s.commit_epoch(Epoch(4), &[batch(vec!["v"], vec![99])])
        .unwrap();
    assert_eq!(
        rows(&url, "SELECT k, v FROM last_rows WHERE k = 'v'"),
        vec![json!({"k": "v", "v": 10})]
    );

    // -0.0 and 0.0 are two keys to Arrow and one to PostgreSQL: the later row wins.
    let floats = RecordBatch::try_from_iter([
        (
            "k",
            Arc::new(Float64Array::from(vec![0.0, 1.5, -0.0])) as ArrayRef,
        ),
        ("v", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
    ])
    .unwrap();
    let table = "float_keys";
    let mut s = sink(&url, table, Some("k"), &floats);
    s.commit_epoch(Epoch(1), &[floats]).unwrap();
    assert_eq!(
        rows(&url, "SELECT abs(k) AS k, v FROM float_keys"),
        vec![json!({"k": 0, "v": 3}), json!({"k": 1.5, "v": 2})]
    );
    assert_eq!(
        s.direct_epochs(),
        0,
        "two rows of one key make the COPY take the stage"
    );
}

#[test]
fn an_upsert_into_a_table_without_a_unique_key_is_refused_at_open() {
    let url = fresh_database("pg_upsert_no_key");
    execute(
        &url,
        "CREATE TABLE no_key (k text, v bigint); \
         CREATE TABLE other_key (k text, v bigint UNIQUE); \
         CREATE TABLE partial_key (k text, v bigint); \
         CREATE UNIQUE INDEX ON partial_key (k) WHERE v > 0; \
         CREATE TABLE unique_key (k text, v bigint); \
         CREATE UNIQUE INDEX ON unique_key (k)",
    );
    let batch = RecordBatch::try_from_iter([
        ("k", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        ("v", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
    ])
    .unwrap();
    for table in ["no_key", "other_key", "partial_key"] {
        let mut options = ConnectorOptions::default();
        options.insert("url", url.clone(), Position::default());
        options.insert("primary_key", "k".to_string(), Position::default());
        options.insert("create_table", "false".to_string(), Position::default());
        let mut s = PostgresSink::open(table, &options, batch.schema()).unwrap();
        let err = s.open("types", table).unwrap_err();
        assert!(
            matches!(err, sluice_runtime::RuntimeError::User(_)),
            "{table}: {err}"
        );
        assert!(err.to_string().contains("unique index on (k)"), "{err}");
    }
    // A unique index (not a primary key) on exactly the key is enough.
    let mut s = sink(&url, "unique_key", Some("k"), &batch);
    s.commit_epoch(Epoch(1), std::slice::from_ref(&batch))
        .unwrap();
    s.commit_epoch(Epoch(2), &[batch]).unwrap();
    assert_eq!(
        rows(&url, "SELECT k, v FROM unique_key"),
        vec![json!({"k": "x", "v": 1})]
    );
}
