//! `GET /metrics` and request tracing, against the real binary: the exposition parses (strictly
//! here, and by `promtool check metrics`), its values move with a job over simulated devices,
//! no label names a device, the metrics token guards it on both listeners, and an error's
//! `requestId` is the one in that request's log line.

mod common;

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const DEVICES: usize = 4;
const PREFIX: &str = "metered-";

/// One sample of the exposition.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A scrape, parsed: every line checked.
struct Exposition {
    samples: Vec<Sample>,
    text: String,
}

impl Exposition {
    /// Parses Prometheus's text format strictly: each line is a `# HELP`, a `# TYPE` or a sample;
    /// names and label names are valid; label values are quoted with valid escapes; every
    /// sample's family has its TYPE (before it) and its HELP; counters end in `_total`; each
    /// histogram's `+Inf` bucket equals its `_count`.
    fn parse(text: &str) -> Exposition {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut helps: HashMap<String, String> = HashMap::new();
        let mut samples = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let at = || format!("line {}: {line:?}", number + 1);
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
                assert!(valid_name(name), "{}", at());
                assert!(!help.trim().is_empty(), "empty HELP: {}", at());
                assert!(
                    helps.insert(name.into(), help.into()).is_none(),
                    "HELP twice: {}",
                    at()
                );
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
                assert!(valid_name(name), "{}", at());
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{}",
                    at()
                );
                assert!(
                    types.insert(name.into(), kind.into()).is_none(),
                    "TYPE twice: {}",
                    at()
                );
                continue;
            }
            assert!(!line.starts_with('#'), "a stray comment: {}", at());
            let sample = parse_sample(line).unwrap_or_else(|| panic!("not a sample: {}", at()));
            let family = family_of(&sample.name, &types)
                .unwrap_or_else(|| panic!("no TYPE before the sample: {}", at()));
            assert!(
                helps.contains_key(&family),
                "no HELP for {family}: {}",
                at()
            );
            if types[&family] == "counter" {
                assert!(
                    family.ends_with("_total"),
                    "a counter without _total: {}",
                    at()
                );
            }
            samples.push(sample);
        }
        let exposition = Exposition {
            samples,
            text: text.to_string(),
        };
        exposition.check_histograms(&types);
        exposition
    }

    fn check_histograms(&self, types: &HashMap<String, String>) {
        for (family, _) in types.iter().filter(|(_, kind)| *kind == "histogram") {
            for count in self
                .samples
                .iter()
                .filter(|s| s.name == format!("{family}_count"))
            {
                let infinite = self
                    .samples
                    .iter()
                    .find(|s| {
                        s.name == format!("{family}_bucket")
                            && s.label("le") == Some("+Inf")
                            && same_labels_but_le(s, count)
                    })
                    .unwrap_or_else(|| panic!("{family}: no +Inf bucket for {count:?}"));
                assert_eq!(infinite.value, count.value, "{family}: {count:?}");
            }
        }
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .map(|s| s.value)
            .sum()
    }
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn same_labels_but_le(a: &Sample, b: &Sample) -> bool {
    let without_le = |s: &Sample| {
        let mut labels: Vec<_> = s
            .labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect();
        labels.sort();
        labels
    };
    without_le(a) == without_le(b)
}

/// The family a sample belongs to: its own name, or a histogram's or summary's without the
/// suffix.
fn family_of(name: &str, types: &HashMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_string());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        matches!(
            types.get(base).map(String::as_str),
            Some("histogram" | "summary")
        )
        .then(|| base.to_string())
    })
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    valid_name(name) && !name.contains(':') && !name.starts_with("__")
}

/// `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if !valid_name(name) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            match chars.peek() {
                Some((_, '}')) => {
                    let (i, _) = chars.next()?;
                    rest = &after[i + 1..];
                    break;
                }
                Some(_) => {}
                None => return None,
            }
            let start = chars.peek()?.0;
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let label = &after[start..eq?];
            if !valid_label_name(label) {
                return None;
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        _ => return None,
                    },
                    '\n' => return None,
                    c => value.push(c),
                }
            }
            labels.push((label.to_string(), value));
            match chars.peek()?.1 {
                ',' => {
                    chars.next();
                }
                '}' => {}
                _ => return None,
            }
        }
    }
    let mut fields = rest.strip_prefix(' ')?.split(' ');
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().ok()?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

async fn scrape(server: &Server) -> Exposition {
    let response = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Exposition::parse(&response.text().await.unwrap())
}

/// `promtool check metrics` (Debian's `prometheus` package; `scripts/test.sh` installs it).
fn promtool_check(text: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (apt-get install prometheus; scripts/test.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Waits (up to 60 s) until the scrape satisfies `ready`.
async fn scrape_until(
    server: &Server,
    what: &str,
    ready: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let exposition = scrape(server).await;
        if ready(&exposition) {
            return exposition;
        }
        assert!(Instant::now() < deadline, "{what}:\n{}", exposition.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_parse_and_move_with_a_job_over_simulated_devices() {
    let server = Server::start().await;
    let api = server.admin();
    let before = scrape(&server).await;
    assert_eq!(before.value("flotilla_devices_connected", &[]), 0.0);
    assert_eq!(
        before.value("flotilla_jobs", &[("status", "complete")]),
        0.0
    );

    api.publish_template(THERMOSTAT, thermostat_template())
        .await;
    let mut sim = sim_command(&server, &api, DEVICES, PREFIX)
        .await
        .args(["--duration", "120"])
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the simulator starts");
    scrape_until(&server, "the devices connect", |m| {
        m.value("flotilla_devices_connected", &[]) == DEVICES as f64
    })
    .await;

    api.put(
        "/deviceGroups/metered",
        json!({"displayName": "Metered", "filter": "SELECT * FROM devices WHERE $provisioned = true"}),
    )
    .await
    .ok(200);
    api.put(
        "/jobs/metered-job",
        json!({
            "group": "metered",
            "data": [{"type": "property", "target": THERMOSTAT, "path": "targetTemperature", "value": 42.0}]
        }),
    )
    .await
    .ok(200);
    let job = wait_job(&api, "metered-job", &["complete"]).await;
    assert_eq!(job["progress"]["completed"], DEVICES, "{job}");

    let after = scrape(&server).await;
    let completed = [
        ("job_type", "property"),
        ("outcome", "completed"),
        ("reason", "none"),
    ];
    assert_eq!(
        after.value("flotilla_job_device_operations_total", &completed)
            - before.value("flotilla_job_device_operations_total", &completed),
        DEVICES as f64,
        "{}",
        after.text
    );
    assert_eq!(
        after.value(
            "flotilla_job_device_operation_duration_seconds_count",
            &[("job_type", "property")]
        ),
        DEVICES as f64
    );
    assert_eq!(after.value("flotilla_jobs", &[("status", "complete")]), 1.0);
    assert_eq!(after.value("flotilla_jobs", &[("status", "running")]), 0.0);
    assert_eq!(
        after.value("flotilla_devices_registered", &[]),
        DEVICES as f64
    );
    // The job's PUT, under its route template, never its path.
    let put_job = [
        ("method", "PUT"),
        ("route", "/api/jobs/{jobId}"),
        ("status_class", "2xx"),
    ];
    assert_eq!(
        after.value("flotilla_http_request_duration_seconds_count", &put_job),
        1.0,
        "{}",
        after.text
    );
    assert!(
        after.value(
            "flotilla_http_request_duration_seconds_count",
            &[("route", "/api/jobs/{jobId}"), ("method", "GET")]
        ) >= 1.0
    );
    // The devices' traffic: their CONNECTs, the desired patch pushed to each and their
    // acknowledgements, and the commits that stored them.
    assert!(
        after.value(
            "flotilla_mqtt_received_packets_total",
            &[("type", "connect")]
        ) >= DEVICES as f64
    );
    assert!(
        after.value("flotilla_mqtt_sent_packets_total", &[("type", "publish")]) >= DEVICES as f64
    );
    assert!(
        after.value(
            "flotilla_mqtt_received_packets_total",
            &[("type", "publish")]
        ) >= DEVICES as f64
    );
    assert!(after.value("flotilla_mqtt_received_bytes_total", &[]) > 0.0);
    assert!(after.value("flotilla_mqtt_sent_bytes_total", &[]) > 0.0);
    assert!(after.value("flotilla_mqtt_connections_accepted_total", &[]) >= DEVICES as f64);
    assert!(after.value("flotilla_db_group_commit_writes_count", &[]) >= 1.0);
    assert!(after.value("flotilla_db_group_commit_duration_seconds_count", &[]) >= 1.0);

    // No label names a device, nor holds a device's id (or a job's).
    for sample in &after.samples {
        for (name, value) in &sample.labels {
            assert!(!name.to_lowercase().contains("device"), "{sample:?}");
            assert!(
                !value.contains(PREFIX) && !value.contains("metered-job"),
                "{sample:?}"
            );
        }
    }
    promtool_check(&after.text);

    sim.kill().await.ok();
    scrape_until(&server, "the devices disconnect", |m| {
        m.value("flotilla_devices_connected", &[]) == 0.0
    })
    .await;
}

#[tokio::test]
async fn a_refused_device_connection_is_counted_by_cause() {
    use tokio::io::AsyncWriteExt;
    let server = Server::start().await;
    let cause = [("listener", "mqtt"), ("cause", "tls_handshake")];
    assert_eq!(
        scrape(&server)
            .await
            .value("flotilla_connections_refused_total", &cause),
        0.0
    );
    // Plain text to the MQTT-over-TLS port: the handshake fails.
    let addr = std::fs::read_to_string(server.data_dir().join("mqtt.addr")).unwrap();
    let mut socket = tokio::net::TcpStream::connect(addr.trim()).await.unwrap();
    socket
        .write_all(b"this is not a TLS ClientHello\r\n\r\n")
        .await
        .unwrap();
    drop(socket);
    scrape_until(&server, "the refused connection is counted", |m| {
        m.value("flotilla_connections_refused_total", &cause) == 1.0
    })
    .await;
}

#[tokio::test]
async fn the_metrics_token_guards_the_endpoint_on_both_listeners() {
    let token = "metrics-token-for-the-test-0123456789";
    let server = Server::start_with_env(&[("FLOTILLA_METRICS_TOKEN", token)]).await;
    // The metrics token is not an API token: the API refuses it (and counts the refusal).
    server
        .client(token)
        .get("/devices")
        .await
        .error(401, "Unauthorized");
    let https = std::fs::read_to_string(server.data_dir().join("https.addr")).unwrap();
    let ca = std::fs::read(server.data_dir().join("ca.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    for base in [server.base.clone(), format!("https://{https}")] {
        let url = format!("{base}/metrics");
        let refused = Api::send(client.get(&url)).await;
        refused.error(401, "Unauthorized");
        assert_eq!(refused.headers["www-authenticate"], "Bearer");
        Api::send(client.get(&url).bearer_auth("wrong"))
            .await
            .error(401, "Unauthorized");
        // The API's own token is not the metrics token.
        Api::send(client.get(&url).bearer_auth(&server.admin_token))
            .await
            .error(401, "Unauthorized");
        let allowed = Api::send(client.get(&url).bearer_auth(token)).await;
        assert_eq!(allowed.status, 200, "{base}: {}", allowed.text);
        let exposition = Exposition::parse(&allowed.text);
        assert_eq!(
            exposition.value("flotilla_http_auth_failures_total", &[]),
            1.0,
            "{}",
            allowed.text
        );
        assert_eq!(
            exposition.value(
                "flotilla_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))]
            ),
            1.0,
            "{}",
            allowed.text
        );
    }
}

#[tokio::test]
async fn an_error_s_request_id_is_the_one_in_its_log_line() {
    let server = Server::start_logging(&[("FLOTILLA_LOG", "info")]).await;
    let api = server.admin();
    let missing = api.get("/devices/no-such-device").await;
    missing.error(404, "NotFound");
    let request_id = missing.body["error"]["requestId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(missing.headers["x-ms-request-id"], request_id.as_str());
    // Every answer carries its id, a success too, and each its own.
    let listed = api.get("/devices").await;
    listed.ok(200);
    let other_id = listed.headers["x-ms-request-id"].to_str().unwrap();
    assert!(!other_id.is_empty());
    assert_ne!(other_id, request_id);

    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let log = without_colours(&server.log());
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("request refused") && l.contains(&request_id))
        {
            break line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line names {request_id}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The request's span: its method and route template, and the id once more.
    assert!(line.contains("method=GET"), "{line}");
    assert!(line.contains("route=/api/devices/{deviceId}"), "{line}");
    assert!(line.contains(&format!("request_id={request_id}")), "{line}");
    assert!(line.contains("NotFound"), "{line}");
}

/// The log without its ANSI colour sequences (`ESC [ ... m`).
fn without_colours(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}
