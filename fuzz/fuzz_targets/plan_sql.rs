//! Any text as a submitted job: planned under a server's rules, it is a plan or an error
//! with a position, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_types::JobRules;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    let rules = JobRules::submitted(std::env::temp_dir(), vec!["KAFKA_BROKERS".into()]);
    let env = |name: &str| (name == "KAFKA_BROKERS").then(|| "127.0.0.1:9092".to_string());
    let _ = sluice::plan_with_rules(sql, &env, &rules);
});
