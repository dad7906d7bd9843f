//! Several `flotilla serve` processes on one PostgreSQL database (cluster mode), each with a
//! data dir and listeners of its own: they all start; a device that trusts the first one's
//! `ca.pem` connects to the others with the credentials it has; DPS on a replica assigns that
//! replica's own host name; and a schedule fires one job per occurrence, from the one replica
//! that leads, and keeps firing after the leader is killed or stopped.
//!
//! Always on PostgreSQL: the server `FLOTILLA_TEST_POSTGRES` names, or the local one.

mod common;

use std::time::{Duration, Instant};

use common::*;
use flotilla_gateway::sas::{percent_encode, sign};
use flotilla_sim::mqtt::{self, ConnectOptions, Endpoint};
use flotilla_sim::provision::{self, RegisterOptions};
use jiff::{Timestamp, ToSpan};
use serde_json::json;

/// The administrator token every replica is given (each has a data dir of its own, so none
/// could read another's generated one).
const ADMIN_TOKEN: &str = "cluster-test-administrator-token-of-48-chars-xxx";

/// Enough for a dead leader's lease (15 s) to run out and another replica to take it.
const FAILOVER: Duration = Duration::from_secs(45);

/// How long a lease given up at a clean stop may take to change hands: the stop, and the
/// others' next claim (every 3 s); well under the 15 s a lease lasts.
const HANDOVER: Duration = Duration::from_secs(8);

/// How long anything else may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// The replica holding the scheduler's `leader` lease: its data dir's instance id.
async fn leader_instance(database: &SharedDatabase) -> Option<String> {
    let pool = sqlx::PgPool::connect(&database.url()).await.unwrap();
    let instance = sqlx::query_scalar(
        "SELECT r.instance FROM leases l JOIN replicas r ON r.id = l.holder \
         WHERE l.name = 'leader'",
    )
    .fetch_optional(&pool)
    .await
    .unwrap();
    pool.close().await;
    instance
}

/// The time the replicas' schedules go by: one file they all read.
struct SharedClock {
    file: TestClock,
    now: Timestamp,
}

impl SharedClock {
    fn at(start: &str) -> SharedClock {
        SharedClock {
            file: TestClock::at(start),
            now: start.parse().unwrap(),
        }
    }

    fn advance_a_day(&mut self) {
        self.now += 24.hours();
        self.file.set(&self.now.to_string());
    }
}

/// Three replicas on one database; the servers are dropped (killed) before the database.
struct Cluster {
    replicas: Vec<Server>,
    clock: SharedClock,
    database: SharedDatabase,
}

impl Cluster {
    /// Starts replica 1 (which makes the application and its CA), then replicas 2 and 3;
    /// replica n is `rn.cluster.test`.
    async fn start() -> Cluster {
        let database = SharedDatabase::fresh();
        let clock = SharedClock::at("2031-03-01T08:00:00Z");
        let mut replicas = Vec::new();
        for n in 1..=3 {
            let hostname = format!("r{n}.cluster.test");
            replicas.push(
                Server::start_sharing(
                    &database.url(),
                    &[
                        ("FLOTILLA_ADMIN_TOKEN", ADMIN_TOKEN),
                        ("FLOTILLA_HOSTNAMES", &hostname),
                        clock.file.env(),
                        ("FLOTILLA_LOG", "info"),
                        ("NO_COLOR", "1"),
                    ],
                )
                .await,
            );
        }
        Cluster {
            replicas,
            clock,
            database,
        }
    }

    fn api(&self, index: usize) -> Api {
        self.replicas[index].client(ADMIN_TOKEN)
    }

    /// The replicas still running.
    fn alive(&self) -> impl Iterator<Item = &Server> {
        self.replicas.iter().filter(|r| r.is_running())
    }

    /// Which replica leads the scheduler, by its index.
    async fn leader(&self) -> Option<usize> {
        let instance = leader_instance(&self.database).await?;
        self.replicas.iter().position(|r| {
            std::fs::read_to_string(r.data_dir().join("instance-id"))
                .is_ok_and(|id| id.trim() == instance)
        })
    }

    /// Waits until every running replica lists exactly these jobs (numbers, newest first) as
    /// the runs of `schedule`.
    async fn wait_runs(&self, schedule: &str, numbers: &[u32], within: Duration) {
        let want: Vec<String> = numbers.iter().map(|n| format!("{schedule}-{n}")).collect();
        let deadline = Instant::now() + within;
        for replica in self.alive() {
            let api = replica.client(ADMIN_TOKEN);
            loop {
                let (runs, _) = api
                    .list_all(&format!("/scheduledJobs/{schedule}/jobs"))
                    .await;
                let got: Vec<String> = runs
                    .iter()
                    .map(|j| j["id"].as_str().unwrap().to_string())
                    .collect();
                if got == want {
                    break;
                }
                // Never more than one job per occurrence, even for a moment.
                assert!(
                    got.iter().all(|id| want.contains(id)),
                    "{got:?} ran, wanted {want:?}"
                );
                assert!(
                    Instant::now() < deadline,
                    "{} lists {got:?}, wanted {want:?}",
                    replica.base
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Whether a replica's log says that it ran this job for a schedule.
fn ran(replica: &Server, job: &str) -> bool {
    replica
        .log()
        .lines()
        .any(|line| line.contains("scheduled job ran") && line.contains(&format!("job={job}")))
}

#[tokio::test]
async fn a_device_trusting_one_replicas_ca_connects_to_every_replica() {
    let cluster = Cluster::start().await;
    let ca = cluster.replicas[0].data_dir().join("ca.pem");
    let api = cluster.api(0);
    api.put("/devices/roamer", json!({})).await.ok(200);
    let group = cluster
        .api(1)
        .get("/enrollmentGroups/sas-iot-devices")
        .await
        .ok(200)
        .clone();
    let group_key = group["attestation"]["symmetricKey"]["primaryKey"]
        .as_str()
        .unwrap();
    let key = flotilla_model::keys::derive_device_key(group_key, "roamer").unwrap();

    for (index, replica) in cluster.replicas.iter().enumerate() {
        let own_name = format!("r{}.cluster.test", index + 1);
        // Every replica's ca.pem is the first one's.
        assert_eq!(
            std::fs::read_to_string(replica.data_dir().join("ca.pem")).unwrap(),
            std::fs::read_to_string(&ca).unwrap()
        );
        let addr = std::fs::read_to_string(replica.data_dir().join("mqtt.addr")).unwrap();
        // The replica's own name is on its certificate.
        let endpoint = Endpoint {
            addr: addr.trim().parse().unwrap(),
            server_name: flotilla_sim::tls::server_name(&own_name).unwrap(),
            tls: flotilla_sim::tls::connector(&ca).unwrap(),
        };

        // DPS on a replica assigns that replica's own (first) host name.
        let assignment = provision::register(
            &endpoint,
            &flotilla_sim::config::Credential {
                device_id: "roamer".into(),
                key: key.clone(),
            },
            group["idScope"].as_str().unwrap(),
            None,
            &RegisterOptions {
                keep_alive: Duration::from_secs(60),
                sas_ttl: Duration::from_secs(3600),
                source: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(assignment.assigned_hub, own_name);

        // The device keeps the hub name and token it got from replica 1: the host part is
        // not compared, so any replica takes them.
        let resource = "r1.cluster.test/devices/roamer";
        let expiry = Timestamp::now().as_second() + 3600;
        let password = sign(&percent_encode(resource), &key, expiry).unwrap();
        let options = ConnectOptions {
            client_id: "roamer",
            username: "r1.cluster.test/roamer/?api-version=2021-04-12",
            password: &password,
            clean_session: true,
            keep_alive: Duration::from_secs(60),
            source: None,
        };
        let (mut connection, _) =
            tokio::time::timeout(DEADLINE, mqtt::connect(&endpoint, &options))
                .await
                .expect("a CONNACK in time")
                .unwrap_or_else(|e| panic!("replica {} refused the device: {e}", index + 1));
        connection.disconnect().await;
    }
}

#[tokio::test]
async fn a_schedule_fires_once_per_occurrence_from_the_leader_and_after_it_dies() {
    let mut cluster = Cluster::start().await;
    one_controller_in_group_all(&cluster.api(0)).await;
    // Created on replica 2: any replica's API writes the one database.
    cluster
        .api(1)
        .put(
            "/scheduledJobs/daily",
            json!({
                "displayName": "Daily",
                "group": "all",
                "data": [{"type": "cloudProperty", "target": CONTROLLER,
                          "path": "customerName", "value": "daily"}],
                "schedule": {"start": "2031-03-01T08:00:00Z", "recurrence": "daily",
                             "end": {"type": "occurrences", "occurrences": 4}},
                "enabled": true,
            }),
        )
        .await
        .ok(200);

    cluster.wait_runs("daily", &[1], DEADLINE).await;
    cluster.clock.advance_a_day();
    cluster.wait_runs("daily", &[2, 1], DEADLINE).await;

    // The leader fired both; nobody else did.
    let leader = cluster.leader().await.expect("a replica holds the lease");
    for (index, replica) in cluster.replicas.iter().enumerate() {
        for job in ["daily-1", "daily-2"] {
            assert_eq!(
                ran(replica, job),
                index == leader,
                "replica {} (the leader is {}) and {job}:\n{}",
                index + 1,
                leader + 1,
                replica.log()
            );
        }
    }

    // The leader dies; another replica takes its lease over and runs the next occurrences.
    cluster.replicas[leader].kill();
    cluster.clock.advance_a_day();
    cluster.wait_runs("daily", &[3, 2, 1], FAILOVER).await;
    let successor = cluster.leader().await.expect("a replica holds the lease");
    assert_ne!(successor, leader);
    assert!(ran(&cluster.replicas[successor], "daily-3"));

    // A leader stopped cleanly (SIGTERM) gives its lease up: the last replica takes it well
    // before the lease would have expired.
    let stopping = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(
            cluster.replicas[successor].pid() as libc::pid_t,
            libc::SIGTERM,
        );
    }
    let last = loop {
        if let Some(now) = cluster.leader().await
            && now != successor
        {
            break now;
        }
        assert!(
            stopping.elapsed() < HANDOVER,
            "no replica took the lease over within {HANDOVER:?} of a clean stop"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    cluster.replicas[successor].kill();
    cluster.clock.advance_a_day();
    cluster.wait_runs("daily", &[4, 3, 2, 1], DEADLINE).await;
    assert!(ran(&cluster.replicas[last], "daily-4"));
    let survivor = cluster.api(last);
    let schedule = survivor.get("/scheduledJobs/daily").await.ok(200).clone();
    assert_eq!(schedule["completed"], true, "{schedule}");
}
