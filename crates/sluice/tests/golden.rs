//! Golden tests: each `tests/golden/NAME.sql` job runs over the JSON-lines input next to
//! it and must write exactly `NAME.expected.jsonl`, at parallelism 1 and 2.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

use std::path::PathBuf;

fn golden(name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let sql = std::fs::read_to_string(dir.join(format!("{name}.sql"))).unwrap();
    let expected = std::fs::read_to_string(dir.join(format!("{name}.expected.jsonl"))).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for parallelism in [1, 2] {
        let out = tmp.path().join(format!("{name}-{parallelism}.jsonl"));
        let vars = [
            ("DIR", dir.display().to_string()),
            ("OUT", out.display().to_string()),
        ];
        support::run_job(&sql, &vars, parallelism);
        let got = std::fs::read_to_string(&out).unwrap();
        assert_eq!(got, expected, "{name} at parallelism {parallelism}");
    }
}

#[test]
fn iot_tumble() {
    golden("iot_tumble");
}

#[test]
fn alerts_stateless() {
    golden("alerts_stateless");
}
