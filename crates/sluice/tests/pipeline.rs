//! The pipeline the dashboards show: generated IoT and user-activity events in Kafka
//! topics (the test broker, SLUICE_KAFKA_BROKERS), the four reference jobs of `sql/` with
//! the Kafka and PostgreSQL catalogs of `sql/catalog/`, writing to PostgreSQL tables made by `sql/schema.sql` (SLUICE_TEST_DATABASE_URL),
//! then every dashboard panel's query run against what they wrote.
#![allow(clippy::unwrap_used)]

#[path = "support/helpers.rs"]
mod support;

#[path = "support/pg.rs"]
mod pg;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sqlx::{Connection, PgConnection, Row};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs a pipeline job as the server would: under its rules, files in `data_dir`.
fn run_job(file: &Path, vars: &[(&str, String)], data_dir: &Path) {
    let sql = std::fs::read_to_string(file).unwrap();
    let rules = sluice_types::JobRules::submitted(
        data_dir.to_path_buf(),
        vars.iter().map(|(k, _)| k.to_string()).collect(),
    );
    let catalogs = support::sql_catalogs(PIPELINE_CATALOGS);
    support::run_job_with_catalogs(&sql, &catalogs, vars, 2, &rules);
}

/// The pipeline's tables: streams from Kafka, results into PostgreSQL.
const PIPELINE_CATALOGS: &[&str] = &["kafka", "postgres"];

fn count(db: &str, sql: &str) -> i64 {
    pg::rt().block_on(async {
        let mut c = PgConnection::connect(db).await.unwrap();
        sqlx::query(sql)
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .get::<i64, _>(0)
    })
}

/// The pipeline's jobs (`sql/<job>.sql`), as scripts/pipeline.sh and docker-compose run them.
const JOBS: [&str; 10] = [
    "iot_aggregates",
    "iot_alerts",
    "user_activity",
    "long_sessions",
    "sensor_state",
    "factory_alerts",
    "factory_health",
    "host_status",
    "race_laps",
    "race_map",
];

/// Machines of the generated factory stream.
const MACHINES: i64 = 12;

/// A database with the schema, filled by a real run of the pipeline jobs.
fn populated() -> String {
    let db = pg::fresh_database("pipeline");
    let schema = std::fs::read_to_string(repo().join("sql/schema.sql")).unwrap();
    pg::rt().block_on(async {
        let mut c = PgConnection::connect(&db).await.unwrap();
        sqlx::raw_sql(&schema).execute(&mut c).await.unwrap();
    });
    let iot = pg::unique("pipe_iot");
    let users = pg::unique("pipe_users");
    let options = [
        ("rate", "0"),
        ("speedup", "60"),
        ("seed", "7"),
        ("start_time", "2024-05-01T00:00:00Z"),
        ("duplicate_fraction", "0.02"),
    ];
    support::generate_topic("iot", &iot, 2, &options, 30_000);
    support::generate_topic("user-activity", &users, 2, &options, 30_000);
    let factory = pg::unique("pipe_factory");
    let machines = MACHINES.to_string();
    let factory_options = [
        ("rate", "0"),
        ("speedup", "60"),
        ("seed", "7"),
        ("keys", machines.as_str()),
        ("anomaly_fraction", "0.01"),
        ("start_time", "2024-05-01T00:00:00Z"),
    ];
    support::generate_topic("factory", &factory, 2, &factory_options, 20_000);
    // Five minutes of a race of 8 cars.
    let race = pg::unique("pipe_race");
    let race_options = [
        ("rate", "0"),
        ("seed", "7"),
        ("keys", "8"),
        ("start_time", "2024-05-01T00:00:00Z"),
    ];
    support::generate_topic("race", &race, 2, &race_options, 24_000);
    // Host metrics as recorded on three hosts, sent as each host's agent sends them.
    let hosts = pg::unique("pipe_hosts");
    sluice::generate::ensure_topic(&support::brokers(), &hosts, 1).unwrap();
    support::send_json_lines(
        &support::brokers(),
        &hosts,
        &std::fs::read_to_string(repo().join("sql/data/host_metrics_recorded.jsonl")).unwrap(),
        "host",
    );
    // The test broker creates no topic on first use.
    let alerts_topic = pg::unique("pipe_factory_alerts");
    sluice::generate::ensure_topic(&support::brokers(), &alerts_topic, 1).unwrap();
    let out = tempfile::tempdir().unwrap();
    let vars = [
        ("KAFKA_BROKERS", support::brokers()),
        ("IOT_SENSORS_TOPIC", iot),
        ("USER_ACTIVITY_TOPIC", users),
        ("FACTORY_READINGS_TOPIC", factory),
        ("FACTORY_ALERTS_TOPIC", alerts_topic.clone()),
        ("HOST_METRICS_TOPIC", hosts),
        ("RACE_POSITIONS_TOPIC", race),
        ("SCAN_BOUNDED", "latest-offset".into()),
        ("DATABASE_URL", db.clone()),
    ];
    for job in JOBS {
        run_job(&repo().join(format!("sql/{job}.sql")), &vars, out.path());
    }
    db
}

#[test]
fn the_pipeline_jobs_fill_every_table_of_the_schema() {
    let db = populated();
    for table in [
        "sensor_metrics_5m",
        "sensor_battery_5m",
        "iot_alerts",
        "activity_by_browser",
        "activity_by_event_type",
        "activity_5m",
        "sessions",
        "long_sessions",
        "sensor_latest",
        "location_readings",
        "factory_alerts",
        "machine_health",
        "machine_stats_1m",
        "host_metrics_1m",
        "host_status",
        "car_speed_5s",
        "lap_times",
        "leaderboard",
    ] {
        let n = count(&db, &format!("SELECT count(*) FROM {table}"));
        assert!(n > 0, "{table} is empty");
    }
    for kind in ["high_temperature", "low_battery"] {
        assert!(
            count(
                &db,
                &format!("SELECT count(*) FROM iot_alerts WHERE kind = '{kind}'")
            ) > 0,
            "no {kind} alerts"
        );
    }
    // Keyed tables hold one row per key; readings add up to the events.
    assert_eq!(
        count(&db, "SELECT sum(readings)::bigint FROM sensor_metrics_5m"),
        30_000
    );
    assert_eq!(
        count(&db, "SELECT sum(events)::bigint FROM activity_5m"),
        30_000
    );
    assert_eq!(
        count(
            &db,
            // Longer than 5 minutes, in whole seconds: 300 (for 300.4 s) or more.
            "SELECT count(*) FROM long_sessions WHERE duration_seconds < 300"
        ),
        0
    );

    // One row per sensor, its newest reading; readings per location count each reading
    // once (duplicates the producer re-sent are dropped).
    assert_eq!(
        count(&db, "SELECT count(*) FROM sensor_latest"),
        count(
            &db,
            "SELECT count(DISTINCT sensor_id) FROM sensor_battery_5m"
        )
    );
    let distinct = count(&db, "SELECT sum(readings)::bigint FROM location_readings");
    assert!(
        distinct < 30_000 && distinct > 29_000,
        "readings without duplicates: {distinct}"
    );

    // Factory: alerts at both levels, one per reading over its threshold (a re-sent
    // reading's alert written once), one health row per machine, every reading counted
    // in the minute statistics.
    for level in ["warning", "critical"] {
        assert!(
            count(
                &db,
                &format!("SELECT count(*) FROM factory_alerts WHERE level = '{level}'")
            ) > 0,
            "no {level} factory alerts"
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM factory_alerts a JOIN sensor_thresholds t USING (sensor_type)
             WHERE a.value < t.warning OR (a.level = 'critical') <> (a.value >= t.critical)"
        ),
        0,
        "an alert at the wrong level"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM machine_health"), MACHINES);
    assert_eq!(
        count(&db, "SELECT sum(readings)::bigint FROM machine_stats_1m"),
        20_000
    );

    // Hosts: 3 hosts × 10 minutes, each host's last status.
    assert_eq!(count(&db, "SELECT count(*) FROM host_metrics_1m"), 30);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM host_status WHERE (host, status) IN
             (('web-1', 'Normal'), ('db-1', 'Critical'), ('batch-1', 'Critical'))"
        ),
        3
    );

    // Race: the first five places of eight cars, as PostgreSQL ranks the complete laps.
    assert_eq!(count(&db, "SELECT count(*) FROM leaderboard"), 5);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM leaderboard l JOIN (
                 SELECT car_id, count(*) AS laps_done, sum(lap_ms)::bigint AS total_ms,
                        row_number() OVER (ORDER BY count(*) DESC, sum(lap_ms), car_id) AS place
                 FROM lap_times WHERE complete GROUP BY car_id) o
             USING (place, car_id, laps_done, total_ms)"
        ),
        5
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM lap_times WHERE complete AND lap_ms NOT BETWEEN 50000 AND 90000"
        ),
        0
    );

    // Every PostgreSQL panel's query, macros expanded to the data's time range, returns rows.
    for (file, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let Some(sql) = t["rawSql"].as_str() else {
                    continue;
                };
                let sql = expand_macros(sql);
                let n = count(&db, &format!("SELECT count(*) FROM ({sql}) q"));
                assert!(
                    n > 0,
                    "{file}: panel {:?} returns no rows:\n{sql}",
                    p["title"]
                );
            }
        }
    }
}

fn dashboards() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(repo().join("grafana/dashboards")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((path.display().to_string(), v));
        }
    }
    assert!(
        out.len() >= 3,
        "the IoT, user-activity and engine dashboards"
    );
    out
}

/// Grafana's macros over a fixed time range (what the data was generated in); any
/// other macro or variable fails, so a dashboard cannot use one this test cannot run.
fn expand_macros(sql: &str) -> String {
    let (from, to) = (
        "'2024-04-30T00:00:00Z'::timestamptz",
        "'2024-05-02T00:00:00Z'::timestamptz",
    );
    let mut out = sql.to_string();
    while let Some(i) = out.find("$__") {
        let rest = &out[i..];
        let open = rest
            .find('(')
            .unwrap_or_else(|| panic!("macro without arguments: {rest}"));
        let close = rest.find(')').unwrap();
        let name = &rest[3..open];
        let args: Vec<&str> = rest[open + 1..close].split(',').map(str::trim).collect();
        let replacement = match (name, args.as_slice()) {
            ("timeFilter", [col]) => format!("{col} BETWEEN {from} AND {to}"),
            ("timeFrom", [""]) => from.to_string(),
            ("timeTo", [""]) => to.to_string(),
            ("timeGroupAlias", [col, step]) => {
                let secs: i64 = match step.split_at(step.len() - 1) {
                    (n, "s") => n.parse().unwrap(),
                    (n, "m") => n.parse::<i64>().unwrap() * 60,
                    (n, "h") => n.parse::<i64>().unwrap() * 3600,
                    _ => panic!("interval {step}"),
                };
                format!(
                    "to_timestamp(floor(extract(epoch from {col}) / {secs}) * {secs}) AS \"time\""
                )
            }
            _ => panic!(
                "a macro this test cannot expand: $__{name}({})",
                args.join(", ")
            ),
        };
        out.replace_range(i..i + close + 1, &replacement);
    }
    assert!(!out.contains('$'), "an unexpanded variable in: {out}");
    out
}

#[test]
fn dashboards_and_provisioning_have_what_grafana_needs() {
    let ds: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("grafana/provisioning/datasources/sluice.yml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(ds["apiVersion"], 1);
    let sources: HashMap<String, String> = ds["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|d| {
            for k in ["name", "type", "url"] {
                assert!(d[k].as_str().is_some_and(|v| !v.is_empty()), "{k} in {d:?}");
            }
            (
                d["uid"].as_str().unwrap().to_string(),
                d["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let providers: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("grafana/provisioning/dashboards/sluice.yml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(providers["apiVersion"], 1);
    assert_eq!(
        providers["providers"][0]["options"]["path"],
        "/var/lib/grafana/dashboards"
    );

    let mut uids = std::collections::HashSet::new();
    for (file, d) in dashboards() {
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_string()),
            "{file}: uid"
        );
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{file}: title"
        );
        let panels = d["panels"].as_array().unwrap();
        assert!(panels.len() >= 6, "{file}: panels");
        let mut ids = std::collections::HashSet::new();
        for p in panels {
            let title = p["title"].as_str().unwrap();
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: panel id of {title}"
            );
            assert!(p["type"].as_str().is_some() && p["gridPos"]["w"].as_u64().is_some());
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for t in targets.iter().chain([p]) {
                let uid = t["datasource"]["uid"].as_str().unwrap();
                let ty = t["datasource"]["type"].as_str().unwrap();
                assert_eq!(
                    sources.get(uid).map(String::as_str),
                    Some(ty),
                    "{file}: {title} uses data source {uid} ({ty}), not provisioned"
                );
            }
            for t in targets {
                if let Some(expr) = t["expr"].as_str() {
                    // Every metric name in a PromQL expression is one Sluice exposes.
                    for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                        if word.starts_with("sluice_") {
                            assert!(
                                sluice_server::prometheus::METRIC_NAMES.contains(&word),
                                "{file}: {title}: /metrics has no {word}"
                            );
                        }
                    }
                } else {
                    let sql = t["rawSql"].as_str().unwrap();
                    assert!(
                        sql.contains("$__timeFilter("),
                        "{file}: {title} ignores the time picker"
                    );
                }
            }
        }
    }
}

/// The part of the Compose specification this file uses, checked key by key: a
/// misspelt key or a value of the wrong kind fails, as `docker compose config` would.
fn check_compose_shape(compose: &serde_yaml::Value) {
    use serde_yaml::Value;
    let keys = |v: &Value| -> Vec<String> {
        v.as_mapping()
            .unwrap_or_else(|| panic!("not a mapping: {v:?}"))
            .keys()
            .map(|k| k.as_str().unwrap().to_string())
            .collect()
    };
    for k in keys(compose) {
        assert!(
            ["name", "services", "volumes", "networks"].contains(&k.as_str())
                || k.starts_with("x-"),
            "top-level key {k}"
        );
    }
    let duration = |v: &Value| {
        let t = v.as_str().unwrap_or_default();
        assert!(
            t.strip_suffix("ms")
                .or(t.strip_suffix('s'))
                .or(t.strip_suffix('m'))
                .is_some_and(|n| n.parse::<u64>().is_ok()),
            "a duration: {v:?}"
        );
    };
    let strings = |v: &Value, what: &str| {
        for item in v.as_sequence().unwrap_or_else(|| panic!("{what}: a list")) {
            assert!(item.is_string(), "{what}: {item:?} is not a string");
        }
    };
    for (name, svc) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        for k in keys(svc) {
            let v = &svc[k.as_str()];
            match k.as_str() {
                "image" | "build" => assert!(v.is_string(), "{name}.{k}"),
                "command" | "entrypoint" => strings(v, &format!("{name}.{k}")),
                "volumes" | "ports" => strings(v, &format!("{name}.{k}")),
                "environment" => {
                    for (ek, ev) in v.as_mapping().unwrap() {
                        assert!(
                            ek.is_string() && ev.is_string(),
                            "{name}.environment: {ek:?}"
                        );
                    }
                }
                "restart" => assert!(
                    ["no", "always", "on-failure", "unless-stopped"].contains(&v.as_str().unwrap()),
                    "{name}.restart"
                ),
                "depends_on" => match v {
                    Value::Sequence(_) => strings(v, &format!("{name}.depends_on")),
                    Value::Mapping(m) => {
                        for dep in m.values() {
                            assert_eq!(keys(dep), ["condition"], "{name}.depends_on");
                            assert!(
                                [
                                    "service_started",
                                    "service_healthy",
                                    "service_completed_successfully"
                                ]
                                .contains(&dep["condition"].as_str().unwrap()),
                                "{name}.depends_on condition"
                            );
                        }
                    }
                    _ => panic!("{name}.depends_on"),
                },
                "healthcheck" => {
                    for hk in keys(v) {
                        match hk.as_str() {
                            "test" => strings(&v["test"], &format!("{name}.healthcheck.test")),
                            "interval" | "timeout" | "start_period" => duration(&v[hk.as_str()]),
                            "retries" => assert!(v["retries"].as_u64().is_some()),
                            other => panic!("{name}.healthcheck.{other}"),
                        }
                    }
                }
                other => panic!("{name}: key {other} is not one this file should use"),
            }
        }
        for p in svc["ports"].as_sequence().into_iter().flatten() {
            let (host, container) = p.as_str().unwrap().split_once(':').unwrap();
            assert!(
                host.parse::<u16>().is_ok() && container.parse::<u16>().is_ok(),
                "{name}: port {p:?}"
            );
        }
    }
}

/// What `docker compose config` would check, without a Docker engine: the file parses,
/// services reference what exists, and ports, credentials and environment agree with
/// Grafana's provisioning, Prometheus's config and what the jobs and the code read.
#[test]
fn docker_compose_agrees_with_the_code_and_the_provisioning() {
    let read_yaml = |p: &str| -> serde_yaml::Value {
        let mut v: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(repo().join(p)).unwrap())
                .unwrap_or_else(|e| panic!("{p}: {e}"));
        v.apply_merge().unwrap();
        v
    };
    let compose = read_yaml("docker-compose.yml");
    check_compose_shape(&compose);
    let services = compose["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    for want in [
        "kafka",
        "postgres",
        "sluice",
        "iot-generator",
        "activity-generator",
        "submit-jobs",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(&want), "service {want} missing");
    }
    let s = |name: &str| &compose["services"][name];
    let env = |name: &str, key: &str| s(name)["environment"][key].as_str().map(str::to_string);
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        assert!(
            svc["image"].is_string() || svc["build"].is_string(),
            "{name}: no image or build"
        );
        let deps: Vec<String> = match &svc["depends_on"] {
            serde_yaml::Value::Sequence(v) => {
                v.iter().map(|d| d.as_str().unwrap().into()).collect()
            }
            serde_yaml::Value::Mapping(m) => m.keys().map(|d| d.as_str().unwrap().into()).collect(),
            _ => Vec::new(),
        };
        for d in deps {
            assert!(names.contains(&d.as_str()), "{name} depends on unknown {d}");
        }
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with("./") {
                assert!(repo().join(src).exists(), "{name} mounts missing {src}");
            } else {
                let declared = compose["volumes"].as_mapping().unwrap();
                assert!(
                    declared.contains_key(src),
                    "{name}: volume {src} is not declared"
                );
            }
        }
    }
    // Grafana on 3000 with the provisioning where Grafana looks for it.
    let gvol: Vec<&str> = s("grafana")["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(s("grafana")["ports"][0].as_str() == Some("3000:3000"));
    assert!(gvol.contains(&"./grafana/provisioning:/etc/grafana/provisioning:ro"));
    assert!(gvol.contains(&"./grafana/dashboards:/var/lib/grafana/dashboards:ro"));
    // The PostgreSQL data source is the compose database, with its credentials.
    let ds = read_yaml("grafana/provisioning/datasources/sluice.yml");
    let pg = ds["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|d| d["uid"] == "sluice-postgres")
        .unwrap();
    assert_eq!(pg["url"], "postgres:5432");
    assert_eq!(
        pg["jsonData"]["database"].as_str(),
        env("postgres", "POSTGRES_DB").as_deref()
    );
    assert_eq!(
        pg["user"].as_str(),
        env("postgres", "POSTGRES_USER").as_deref()
    );
    assert_eq!(
        pg["secureJsonData"]["password"].as_str(),
        env("postgres", "POSTGRES_PASSWORD").as_deref()
    );
    let prom = ds["datasources"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|d| d["uid"] == "sluice-prometheus")
        .unwrap();
    assert_eq!(prom["url"], "http://prometheus:9090");
    // Prometheus scrapes the server's /metrics on the port it listens on.
    let p = read_yaml("grafana/prometheus.yml");
    assert_eq!(p["scrape_configs"][0]["metrics_path"], "/metrics");
    assert_eq!(
        p["scrape_configs"][0]["static_configs"][0]["targets"][0],
        "sluice:8080"
    );
    let cmd: Vec<&str> = s("sluice")["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(cmd[..3], ["serve", "--listen", "0.0.0.0:8080"]);
    assert_eq!(s("sluice")["ports"][0], "8080:8080");
    // The server expands the jobs' ${VARS} from its own environment: every variable the
    // pipeline jobs use without a default is set, and the database URL is the compose one.
    let url = env("sluice", "DATABASE_URL").unwrap();
    assert_eq!(url, "postgres://postgres:sluice@postgres:5432/sluice");
    assert_eq!(
        env("sluice", "KAFKA_BROKERS").as_deref(),
        Some("kafka:9092")
    );
    // The server may only expand the variables it allows: every one the jobs name is.
    let allowed = env("sluice", "SLUICE_ALLOW_ENV").unwrap();
    let allowed: Vec<&str> = allowed.split(',').collect();
    let files = PIPELINE_CATALOGS
        .iter()
        .map(|c| format!("sql/catalog/{c}.sql"))
        .chain(JOBS.map(|j| format!("sql/{j}.sql")));
    for file in files {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        for name in text.split("${").skip(1) {
            let name = name.split(['}', ':']).next().unwrap();
            assert!(allowed.contains(&name), "{name} is not in SLUICE_ALLOW_ENV");
        }
    }
    // The server listens beyond loopback, so it needs a token; the submitter and
    // Prometheus send the same one.
    let token = env("sluice", "SLUICE_AUTH_TOKEN").unwrap();
    assert!(!token.is_empty());
    assert_eq!(env("submit-jobs", "SLUICE_AUTH_TOKEN"), Some(token.clone()));
    let auth = &p["scrape_configs"][0]["authorization"];
    assert_eq!(auth["type"].as_str(), Some("Bearer"));
    assert_eq!(auth["credentials"].as_str(), Some(token.as_str()));
    let submit = s("submit-jobs")["command"][0].as_str().unwrap();
    assert_eq!(
        env("submit-jobs", "SLUICE_SERVER").as_deref(),
        Some("http://sluice:8080")
    );
    for job in JOBS {
        assert!(repo().join(format!("sql/{job}.sql")).exists());
        assert!(submit.contains(job), "submit-jobs does not submit {job}");
    }
    // The server's table catalog holds Kafka's streams, then PostgreSQL's tables.
    let kafka = submit.find("catalog add kafka /sql/catalog/kafka.sql");
    let postgres = submit.find("catalog add postgres /sql/catalog/postgres.sql");
    assert!(
        kafka.is_some() && postgres.is_some() && kafka < postgres,
        "{submit}"
    );
    assert!(submit.contains("submit /sql/$$job.sql"), "{submit}");
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY sql /sql") && dockerfile.contains("ENTRYPOINT [\"sluice\"]"));
    let user = dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("the image names a user");
    assert_ne!(user.trim(), "root", "the image runs as a non-root user");
    // The generators write the topics the jobs read by default.
    for (svc, topic) in [
        ("iot-generator", "iot_sensors"),
        ("activity-generator", "user_activity"),
    ] {
        let c = s(svc)["command"][0].as_str().unwrap();
        assert!(c.contains(&format!("--topic {topic}")) && c.contains("--brokers kafka:9092"));
    }
}

fn pipeline_script(cmd: &str, env: &[(&str, String)]) -> String {
    let out = std::process::Command::new("bash")
        .arg(repo().join("scripts/pipeline.sh"))
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SLUICE_BIN", env!("CARGO_BIN_EXE_sluice"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pipeline.sh {cmd}: {text}");
    text
}

#[test]
fn the_no_docker_script_brings_the_pipeline_up_and_down() {
    let state = tempfile::tempdir().unwrap();
    let (port, kafka_port) = (support::free_port(), support::free_port());
    let db_name = pg::unique("pipeline_script");
    let env = [
        ("SLUICE_PIPELINE_STATE", state.path().display().to_string()),
        ("SLUICE_PIPELINE_PORT", port.to_string()),
        ("SLUICE_PIPELINE_KAFKA_PORT", kafka_port.to_string()),
        ("SLUICE_PIPELINE_DB", db_name.clone()),
        // Event time 600 times faster: windows close within seconds.
        ("GEN_SPEEDUP", "600".to_string()),
    ];
    let text = pipeline_script("start", &env);
    assert!(text.contains("The pipeline runs"), "{text}");
    let admin = pg::admin_url();
    let db = format!("{}/{db_name}", admin.rsplit_once('/').unwrap().0);
    let t0 = std::time::Instant::now();
    while count(&db, "SELECT count(*) FROM sensor_metrics_5m") == 0
        || count(&db, "SELECT count(*) FROM activity_5m") == 0
    {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(90),
            "no window results reached PostgreSQL"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let text = pipeline_script("stop", &env);
    assert!(text.contains("stopped"), "{text}");
    let status = pipeline_script("status", &env);
    assert_eq!(status.matches(": stopped").count(), 6, "{status}");
    for p in [port, kafka_port] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p)).is_err(),
            "port {p} still answers"
        );
    }
    // The server stopped its jobs with a final checkpoint and kept them active in its
    // catalog, so the next start resumes them.
    let catalog =
        std::fs::read_to_string(state.path().join("checkpoints/sluice-jobs.json")).unwrap();
    assert_eq!(
        catalog.matches("\"state\": \"running\"").count(),
        JOBS.len(),
        "{catalog}"
    );
}
