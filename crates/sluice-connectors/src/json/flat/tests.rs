//! The fast path against arrow-json, its oracle: wherever the fast path reads a line,
//! arrow-json must read it to the same row.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::{FlatDecoder, parse_timestamp, same};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("t", DataType::Float64, true),
        Field::new("n", DataType::Int64, true),
        Field::new("small", DataType::Int8, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("f", DataType::Float32, true),
        Field::new("u", DataType::UInt32, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            false,
        ),
        Field::new("us", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]))
}

/// arrow-json's reading of one chunk of lines: its rows, or `None` on an error or a
/// row count other than the number of lines.
fn oracle(schema: &SchemaRef, lines: &[&[u8]]) -> Option<RecordBatch> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(lines.len().max(1))
        .build_decoder()
        .unwrap();
    let mut joined = Vec::new();
    for l in lines {
        joined.extend_from_slice(l);
        joined.push(b'\n');
    }
    let mut bytes = &joined[..];
    while !bytes.is_empty() {
        let n = decoder.decode(bytes).ok()?;
        if n == 0 {
            break;
        }
        bytes = &bytes[n..];
    }
    let batch = decoder.flush().ok()??;
    (batch.num_rows() == lines.len()).then_some(batch)
}

fn show(b: &RecordBatch) -> String {
    pretty_format_batches(std::slice::from_ref(b))
        .unwrap()
        .to_string()
}

/// Where the fast path reads `lines`, arrow-json reads the same; returns whether the
/// fast path read them.
fn agrees(schema: &SchemaRef, lines: &[&[u8]]) -> bool {
    let fast = FlatDecoder::new(schema).unwrap().decode(lines);
    let Ok(fast) = fast else { return false };
    let want = oracle(schema, lines).unwrap_or_else(|| {
        panic!(
            "the fast path read what arrow-json refuses: {:?}",
            lines
                .iter()
                .map(|l| String::from_utf8_lossy(l))
                .collect::<Vec<_>>()
        )
    });
    assert_eq!(show(&fast), show(&want), "lines {lines:?}");
    assert_eq!(fast, want);
    true
}

const GOOD: &[&str] = &[
    r#"{"id":"s-1","t":21.5,"n":7,"small":-3,"ok":true,"f":1.25,"u":4000000000,"at":"2024-05-01T00:00:00Z","us":"2024-05-01T00:00:00.123456Z"}"#,
    r#"{"at":"2024-05-01 12:34:56.789","id":"s-2"}"#,
    r#"  { "id" : "ünïcödé ✓" , "t" : -0.0 , "n" : null , "at" : 1714521600000 }  "#,
    r#"{"id":"","t":1e3,"at":"1969-12-31T23:59:59.999-01:30","extra":{"a":[1,2,{"b":null}],"c":"x\"y\u00e9"},"ok":false}"#,
    r#"{"id":"x","t":12,"at":"2000-02-29T23:59:59.5+05:30","more":[],"none":{}}"#,
    r#"{"id":"big","t":1.7976931348623157e308,"n":-9223372036854775808,"u":0,"at":"9999-12-31T23:59:59.999999999Z"}"#,
    r#"{"id":"tiny","t":5e-324,"f":3.4028235e38,"at":"0001-01-01T00:00:00Z","us":null}"#,
    r#"{"id":"raw	tab","t":0.1,"at":"2024-02-29T00:00:00.000000001Z"}"#,
];

/// Lines the fast path must leave to arrow-json (some good, some bad).
const HARD: &[&str] = &[
    r#"{"id":"esc\"aped","at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"s","t":"21.5","at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":7,"at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"s","n":1.5,"at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"s","small":300,"at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"s","at":"2024-05-01"}"#,
    r#"{"id":"s","at":"2024-05-01T00:00:60Z"}"#,
    r#"{"id":"s","at":"2024-02-30T00:00:00Z"}"#,
    r#"{"id":"s","at":"2024-05-01T00:00:00+0530"}"#,
    r#"{"id":"s"}"#,
    r#"{"at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":null,"at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"a","id":"b","at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"s","t":01,"at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"s","t":1.,"at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"s","t":.5,"at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"s","t":1-2,"at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"s","at":"2024-05-01T00:00:00Z",}"#,
    r#"{"id":"s",,"at":"2024-05-01T00:00:00Z"}"#,
    r#"{"id":"s","at":"2024-05-01T00:00:00Z"} {"id":"t","at":"2024-05-01T00:00:00Z"}"#,
    r#"[1,2]"#,
    r#"{"id":"s","at":"2024-05-01T00:00:00Z","x":[1,]}"#,
    r#"{"id":"s","at":"2024-05-01T00:00:00Z","x":"\ud83d\ude00"}"#,
    r#"{"id":"s","at":"2024-05-01T00:00:00Z","x":"\u+0e9"}"#,
    r#"{"id":"s","at":"2024-05-01T00:00:00Z""#,
    r#"{"id":"s","ok":tru,"at":"2024-05-01T00:00:00Z"}"#,
];

#[test]
fn reads_the_common_lines_as_arrow_json_does() {
    let schema = schema();
    for line in GOOD {
        assert!(agrees(&schema, &[line.as_bytes()]), "gave up on {line}");
    }
    let all: Vec<&[u8]> = GOOD.iter().map(|l| l.as_bytes()).collect();
    assert!(agrees(&schema, &all));
}

#[test]
fn leaves_what_it_is_not_sure_of_to_arrow_json() {
    let schema = schema();
    for line in HARD {
        assert!(!agrees(&schema, &[line.as_bytes()]), "read {line}");
        let mixed = [GOOD[0].as_bytes(), line.as_bytes(), GOOD[1].as_bytes()];
        assert!(!agrees(&schema, &mixed), "read a chunk holding {line}");
    }
    // Bytes that are not UTF-8 in a column's string, a skipped string, an unknown key,
    // a string inside a skipped object, and a sequence cut by a closing quote.
    let bad_utf8: [&[u8]; 5] = [
        b"{\"id\":\"\xff\",\"at\":\"2024-05-01T00:00:00Z\"}",
        b"{\"id\":\"s\",\"x\":\"a\xc3\",\"at\":\"2024-05-01T00:00:00Z\"}",
        b"{\"id\":\"s\",\"\xe2\x9c\":1,\"at\":\"2024-05-01T00:00:00Z\"}",
        b"{\"id\":\"s\",\"x\":{\"y\":[\"\x80\"]},\"at\":\"2024-05-01T00:00:00Z\"}",
        b"{\"id\":\"\xe2\x9c\",\"at\":\"2024-05-01T00:00:00Z\"}",
    ];
    for line in bad_utf8 {
        assert!(!agrees(&schema, &[line]), "read {line:?}");
        assert!(!agrees(&schema, &[GOOD[0].as_bytes(), line]));
    }
}

#[test]
fn only_flat_schemas_take_the_fast_path() {
    let nested = Arc::new(Schema::new(vec![Field::new(
        "l",
        DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
        true,
    )]));
    assert!(FlatDecoder::new(&nested).is_none());
    let zoned = Arc::new(Schema::new(vec![Field::new(
        "at",
        DataType::Timestamp(TimeUnit::Millisecond, Some("+02:00".into())),
        true,
    )]));
    assert!(FlatDecoder::new(&zoned).is_none());
    assert!(FlatDecoder::new(&schema()).is_some());
}

/// A small deterministic generator (xorshift), so that failures repeat.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_lines_are_read_as_arrow_json_reads_them_or_left_to_it() {
    const BYTES: &[u8] = b"{}[]\":,.-+eE0123456789 tnfalsuZT\\x\t\xc3\xa9\xe2\x9c\x93\xff\x80";
    let schema = schema();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut read, mut left) = (0, 0);
    for round in 0..30_000 {
        let mut line = GOOD[round % GOOD.len()].as_bytes().to_vec();
        for _ in 0..=rng.below(3) {
            let at = rng.below(line.len());
            match rng.below(3) {
                0 => line[at] = BYTES[rng.below(BYTES.len())],
                1 => {
                    line.remove(at);
                }
                _ => line.insert(at, BYTES[rng.below(BYTES.len())]),
            }
        }
        if agrees(&schema, &[&line]) {
            read += 1;
        } else {
            left += 1;
        }
    }
    // Both branches are exercised: mutations that keep a line valid and ones that don't.
    assert!(read > 2_000 && left > 2_000, "read {read}, left {left}");
}

#[test]
fn timestamps_parse_as_arrow_does() {
    use datafusion::arrow::compute::kernels::cast_utils::string_to_datetime;
    let dates = [
        "0001-01-01",
        "1969-12-31",
        "1970-01-01",
        "2000-02-29",
        "2023-02-29",
        "2024-02-29",
        "2024-04-31",
        "2024-13-01",
        "2024-00-10",
        "2100-02-29",
        "9999-12-31",
    ];
    let times = [
        "00:00:00", "23:59:59", "12:34:56", "24:00:00", "10:60:00", "10:00:60",
    ];
    let fractions = [
        "",
        ".1",
        ".123",
        ".123456",
        ".123456789",
        ".1234567891",
        ".",
    ];
    let zones = [
        "", "Z", "z", "+05:30", "-08:00", "+23:59", "+24:00", " +05:00", "+0530",
    ];
    let mut parsed = 0;
    for d in dates {
        for sep in ["T", " ", "t"] {
            for t in times {
                for f in fractions {
                    for z in zones {
                        let s = format!("{d}{sep}{t}{f}{z}");
                        for unit in [
                            TimeUnit::Second,
                            TimeUnit::Millisecond,
                            TimeUnit::Microsecond,
                            TimeUnit::Nanosecond,
                        ] {
                            let Some(fast) = parse_timestamp(s.as_bytes(), unit) else {
                                continue;
                            };
                            parsed += 1;
                            let dt = string_to_datetime(&chrono::Utc, &s)
                                .unwrap_or_else(|e| panic!("{s}: arrow refuses ({e})"));
                            let want = match unit {
                                TimeUnit::Second => Some(dt.timestamp()),
                                TimeUnit::Millisecond => Some(dt.timestamp_millis()),
                                TimeUnit::Microsecond => Some(dt.timestamp_micros()),
                                TimeUnit::Nanosecond => dt.timestamp_nanos_opt(),
                            };
                            assert_eq!(Some(fast), want, "{s} in {unit:?}");
                        }
                    }
                }
            }
        }
    }
    // 6 valid dates × 2 separators × 3 times × 5 fractions × 5 zones × 4 units, less the
    // nanoseconds of years 1 and 9999 (out of i64's range): 3,300.
    assert!(parsed >= 3_300, "only {parsed} parsed");
}

#[test]
fn keys_compare_equal_only_when_every_byte_is() {
    for n in 0..=24usize {
        let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i).collect();
        assert!(same(&a, &a.clone()), "length {n}");
        for at in 0..n {
            let mut b = a.clone();
            b[at] ^= 0x20;
            assert!(!same(&a, &b), "length {n}, byte {at} differs");
        }
        assert!(!same(&a, &a[..n.saturating_sub(1)]) || n == 0);
    }
}
