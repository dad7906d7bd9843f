//! Input a careful client would not send, end to end: schedules at the edges of the calendar,
//! filters as large as the server accepts, devices writing into the server's log.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use flotilla_gateway::sas::{percent_encode, sign};
use flotilla_sim::mqtt::{self, ConnectOptions, Endpoint};
use rumqttc::{Packet, QoS, SubscribeReasonCode};
use serde_json::{Value, json};

/// How long anything may take before a test gives up.
const DEADLINE: Duration = Duration::from_secs(30);

/// A server whose scheduler goes by the time in a file (`FLOTILLA_CLOCK_FILE`), with one device
/// of the controller template, a group of every device (`all`) and one of none (`nobody`).
struct Scheduling {
    server: Server,
    clock: PathBuf,
    probes: usize,
}

impl Scheduling {
    async fn start(at: &str) -> Scheduling {
        let clock = std::env::temp_dir().join(format!(
            "flotilla-hostile-clock-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        set_clock(&clock, at);
        let server =
            Server::start_with_env(&[("FLOTILLA_CLOCK_FILE", clock.to_str().unwrap())]).await;
        let api = server.admin();
        api.publish_template(CONTROLLER, controller_template())
            .await;
        api.put("/devices/dev-1", json!({"template": CONTROLLER}))
            .await
            .ok(200);
        for (id, filter) in [
            ("all", "SELECT * FROM devices"),
            ("nobody", "SELECT * FROM devices WHERE $id = \"nobody\""),
        ] {
            api.put(
                &format!("/deviceGroups/{id}"),
                json!({"displayName": id, "filter": filter}),
            )
            .await
            .ok(200);
        }
        Scheduling {
            server,
            clock,
            probes: 0,
        }
    }

    /// Returns once the scheduler has made a whole pass over the schedules at time `now`: a
    /// one-time probe schedule at `now`, whose id sorts after the others, has run.
    async fn settle(&mut self, now: &str) {
        let api = self.server.admin();
        self.probes += 1;
        let id = format!("zz-probe-{:04}", self.probes);
        api.put(
            &format!("/scheduledJobs/{id}"),
            json!({"displayName": "Probe", "group": "nobody", "enabled": true,
                   "data": [cloud_property("probe")], "schedule": {"start": now}}),
        )
        .await
        .ok(200);
        let deadline = Instant::now() + DEADLINE;
        while api.get(&format!("/jobs/{id}-1")).await.status != 200 {
            assert!(Instant::now() < deadline, "the probe {id} never ran");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api.delete(&format!("/scheduledJobs/{id}")).await.ok(204);
    }
}

impl Drop for Scheduling {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.clock);
    }
}

/// Sets the time in a clock file: written aside, then renamed, so the server never reads half.
fn set_clock(path: &Path, at: &str) {
    let aside = path.with_extension("next");
    std::fs::write(&aside, at).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

fn cloud_property(value: &str) -> Value {
    json!({"type": "cloudProperty", "target": CONTROLLER, "path": "customerName", "value": value})
}

fn scheduled_on_all(schedule: Value) -> Value {
    json!({"displayName": "Edge", "group": "all", "enabled": true,
           "data": [cloud_property("edge")], "schedule": schedule})
}

async fn run_ids(api: &Api, scheduled_job: &str) -> Vec<String> {
    api.list_all(&format!("/scheduledJobs/{scheduled_job}/jobs"))
        .await
        .0
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_string())
        .collect()
}

/// Point 9: a daily schedule from year 0000 is millions of occurrences behind a clock in year
/// 9000. Creating it replays nothing, and each later day runs exactly its own occurrence, found
/// by arithmetic: no burst of jobs catching up, one per scheduler pass.
#[tokio::test]
async fn a_daily_schedule_from_the_far_past_runs_once_a_day_without_a_burst() {
    let mut env = Scheduling::start("9000-01-01T12:00:00Z").await;
    let api = env.server.admin();
    api.put(
        "/scheduledJobs/ancient",
        scheduled_on_all(json!({"start": "0000-01-01T00:00:00Z", "recurrence": "daily"})),
    )
    .await
    .ok(200);
    for _ in 0..3 {
        env.settle("9000-01-01T12:00:00Z").await;
    }
    assert_eq!(
        run_ids(&api, "ancient").await,
        Vec::<String>::new(),
        "the past was replayed"
    );

    set_clock(&env.clock, "9000-01-02T12:00:00Z");
    for _ in 0..3 {
        env.settle("9000-01-02T12:00:00Z").await;
    }
    let days: jiff::civil::Date = "9000-01-02".parse().unwrap();
    let occurrence = jiff::civil::date(0, 1, 1)
        .until((jiff::Unit::Day, days))
        .unwrap()
        .get_days();
    assert_eq!(
        run_ids(&api, "ancient").await,
        vec![format!("ancient-{}", occurrence + 1)],
        "one job, for 9000-01-02's occurrence"
    );
}

/// Point 9: starts outside years 0000 to 9999, text after an end date, and a one-time start
/// already past are refused with the field named, and create nothing; the calendar's last
/// second is a valid start.
#[tokio::test]
async fn schedules_outside_the_calendar_or_in_the_past_are_refused() {
    let env = Scheduling::start("2030-01-10T00:00:00Z").await;
    let api = env.server.admin();
    let daily_until = |date: &str| {
        json!({"start": "2030-01-10T00:00:00Z", "recurrence": "daily",
               "end": {"type": "date", "date": date}})
    };
    let cases = [
        (
            json!({"start": "-005000-01-01T00:00:00Z", "recurrence": "daily"}),
            "'schedule.start'",
        ),
        (
            json!({"start": "+010000-01-01T00:00:00Z"}),
            "'schedule.start'",
        ),
        (
            json!({"start": "0000-01-01T00:30:00+01:00", "recurrence": "daily"}),
            "'schedule.start'",
        ),
        (daily_until("2030-12-30garbage"), "'schedule.end.date'"),
        (daily_until("2030-12-30T00:00:00Z"), "'schedule.end.date'"),
        (json!({"start": "2030-01-09T00:00:00Z"}), "'schedule.start'"),
    ];
    for (schedule, named) in cases {
        let message = api
            .put("/scheduledJobs/edge", scheduled_on_all(schedule.clone()))
            .await
            .error(400, "BadRequest");
        assert!(
            message.contains(named),
            "{schedule}: \"{message}\" should name {named}"
        );
        api.get("/scheduledJobs/edge").await.error(404, "NotFound");
    }

    for (id, schedule) in [
        ("last-second", json!({"start": "9999-12-31T23:59:59Z"})),
        (
            "last-day",
            json!({"start": "9999-12-31T23:59:59Z", "recurrence": "daily",
                   "end": {"type": "date", "date": "9999-12-31"}}),
        ),
    ] {
        let created = api
            .put(&format!("/scheduledJobs/{id}"), scheduled_on_all(schedule))
            .await
            .ok(200)
            .clone();
        assert_eq!(created["schedule"]["start"], "9999-12-31T23:59:59Z");
        assert_eq!(created["completed"], false);
    }
}

/// How many literals a filter may hold (comparisons plus IN values), as the filter crate says.
const FILTER_LITERALS: usize = 1000;

/// `$id IN [...]` with `count` ids: the given ones, then `"z"`, which no device is. The ids are
/// one character, so that the longest list fits in a filter's 4,096 characters.
fn id_in_list(ids: &[&str], count: usize) -> String {
    let values: Vec<String> = (0..count)
        .map(|i| format!("\"{}\"", ids.get(i).unwrap_or(&"z")))
        .collect();
    format!("SELECT * FROM devices WHERE $id IN [{}]", values.join(","))
}

async fn server_with_devices(ids: &[&str]) -> Server {
    let server = Server::start().await;
    let api = server.admin();
    api.publish_template(CONTROLLER, controller_template())
        .await;
    for id in ids {
        api.put(&format!("/devices/{id}"), json!({"template": CONTROLLER}))
            .await
            .ok(200);
    }
    server
}

/// Point 13: an IN list as long as a filter may be evaluates on the database: the group lists
/// its devices and a job over it completes. One value more is refused when the group is made.
#[tokio::test]
async fn an_in_list_at_the_limit_evaluates_and_one_more_value_is_refused() {
    let server = server_with_devices(&["a", "b", "c"]).await;
    let api = server.admin();
    api.put(
        "/deviceGroups/long",
        json!({"displayName": "Long", "filter": id_in_list(&["a", "c"], FILTER_LITERALS)}),
    )
    .await
    .ok(200);
    let (members, _) = api.list_all("/deviceGroups/long/devices").await;
    let ids: Vec<&Value> = members.iter().map(|d| &d["id"]).collect();
    assert_eq!(ids, [&json!("a"), &json!("c")]);

    api.put(
        "/jobs/over-long",
        json!({"displayName": "Long", "group": "long", "data": [cloud_property("long")]}),
    )
    .await
    .ok(200);
    let done = wait_job(&api, "over-long", &["complete", "failed"]).await;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(done["progress"]["completed"], 2, "{done}");

    let message = api
        .put(
            "/deviceGroups/longer",
            json!({"displayName": "Longer", "filter": id_in_list(&[], FILTER_LITERALS + 1)}),
        )
        .await
        .error(400, "BadRequest");
    assert!(
        message.contains("filter") && message.contains(&FILTER_LITERALS.to_string()),
        "{message}"
    );
    api.get("/deviceGroups/longer").await.error(404, "NotFound");
}

/// Point 13: a job whose group the database cannot evaluate (here a device's stored cloud
/// properties are not JSON, as after damage to the database) fails with the reason instead of
/// staying pending, retried forever.
#[tokio::test]
async fn a_job_over_a_group_the_database_cannot_evaluate_fails_with_the_reason() {
    let server = server_with_devices(&["dev-1"]).await;
    let api = server.admin();
    api.put(
        "/deviceGroups/named",
        json!({"displayName": "Named", "filter": "SELECT * FROM devices WHERE customerName = \"x\""}),
    )
    .await
    .ok(200);
    damage_cloud_properties(&server, "dev-1").await;

    api.put(
        "/jobs/unevaluable",
        json!({"displayName": "Unevaluable", "group": "named", "data": [cloud_property("x")]}),
    )
    .await
    .ok(200);
    let done = wait_job(&api, "unevaluable", &["failed"]).await;
    let reason = done["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("could not be evaluated"),
        "the failed job should say why: {done}"
    );
    assert_eq!(done["progress"]["total"], 0, "{done}");
}

/// Overwrites a device's stored cloud properties with text that is not JSON.
async fn damage_cloud_properties(server: &Server, device: &str) {
    let url = server.database_url();
    let sql = format!("UPDATE devices SET cloud_properties = 'not json' WHERE id = '{device}'");
    let updated = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::query(&sql)
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected()
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(&sql)
            .execute(&pool)
            .await
            .unwrap()
            .rows_affected()
    };
    assert_eq!(updated, 1);
}

/// The device endpoint of a server, trusting its development CA.
fn mqtt_endpoint(server: &Server) -> Endpoint {
    let addr = std::fs::read_to_string(server.data_dir().join("mqtt.addr")).unwrap();
    Endpoint {
        addr: addr.trim().parse().unwrap(),
        server_name: flotilla_sim::tls::server_name("127.0.0.1").unwrap(),
        tls: flotilla_sim::tls::connector(&server.data_dir().join("ca.pem")).unwrap(),
    }
}

async fn connect(
    endpoint: &Endpoint,
    client_id: &str,
    username: &str,
    password: &str,
) -> Result<(mqtt::Connection, bool), mqtt::ConnectError> {
    let options = ConnectOptions {
        client_id,
        username,
        password,
        clean_session: true,
        keep_alive: Duration::from_secs(60),
        source: None,
    };
    mqtt::connect(endpoint, &options).await
}

/// A line as the server's log writes one (a time, a level, a target): what a forger imitates.
const FORGED: &str = "2030-01-01T00:00:00.000000Z ERROR flotilla: forged by a device";

/// Point 14: a client id or topic filter holding a newline cannot start a line of its own in
/// the log, and a device refused thousands of subscriptions writes a few warnings, not one per
/// topic filter.
#[tokio::test]
async fn devices_can_neither_forge_log_lines_nor_flood_the_log() {
    let server = Server::start_logging(&[("FLOTILLA_LOG", "info")]).await;
    let api = server.admin();
    let endpoint = mqtt_endpoint(&server);
    // Refused before it authenticates: the server logs the client id it was sent.
    let refused = connect(&endpoint, &format!("evil\n{FORGED}"), "nobody", "wrong").await;
    assert!(
        matches!(refused, Err(mqtt::ConnectError::Refused(_))),
        "{:?}",
        refused.err()
    );

    // A DPS client of the default enrollment group, refused subscription after subscription.
    let group = api
        .get("/enrollmentGroups/sas-iot-devices")
        .await
        .ok(200)
        .clone();
    let scope = group["idScope"].as_str().unwrap();
    let group_key = group["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let key = flotilla_model::keys::derive_device_key(group_key, "chatty").unwrap();
    let resource = format!("{scope}/registrations/chatty");
    let expiry = jiff::Timestamp::now().as_second() + 3600;
    let password = sign(&percent_encode(&resource), &key, expiry).unwrap();
    let username = format!("{resource}/api-version=2019-03-31");
    let (mut connection, _) = connect(&endpoint, "chatty", &username, &password)
        .await
        .unwrap();
    let mut filters = vec![format!("forged\n{FORGED}")];
    filters.extend((0..100).map(|i| format!("not/allowed/{i}")));
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    const PACKETS: usize = 50;
    for _ in 0..PACKETS {
        let subscribe = connection.subscribe_packet(&filters, QoS::AtMostOnce);
        connection.send(subscribe).await.unwrap();
        match connection.read().await.unwrap() {
            Packet::SubAck(ack) => assert!(
                ack.return_codes
                    .iter()
                    .all(|code| *code == SubscribeReasonCode::Failure),
                "{ack:?}"
            ),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
    connection.disconnect().await;

    // The connection's end is logged last.
    let deadline = Instant::now() + DEADLINE;
    let log = loop {
        let log = server.log();
        if log.contains("chatty") && log.contains("disconnected") {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "the disconnect was never logged:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for escaped in ["evil\\n2030", "forged\\n2030"] {
        assert!(log.contains(escaped), "{escaped} is not in the log:\n{log}");
    }
    let forged = log.lines().filter(|l| l.starts_with(FORGED)).count();
    assert_eq!(forged, 0, "a device forged {forged} log lines");
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    assert!(
        warnings <= 10,
        "{warnings} warnings for {PACKETS} refused SUBSCRIBE packets of {} filters",
        filters.len()
    );
}
