//! `jobs watch`: follows a job until it ends, from the server's event stream
//! (`GET /api/jobs/{id}/events`, Flotilla's) or, where the server has none (IoT Central answers
//! 404), by polling the job and its devices.

mod sse;
mod view;

use std::time::Duration;

use clap::Args;
use flotilla_model::job::Batch;
use flotilla_model::job_state::JobStatus;
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use crate::client::{Client, failure, unreachable};
use crate::error::{CliError, Exit, Result};
use crate::jobs::job_path;
use crate::output::Format;
use view::{Counts, Progress, View};

#[derive(Args, Debug, Clone)]
pub struct WatchOptions {
    /// Poll the REST API instead of following the server's event stream.
    #[arg(long)]
    pub poll: bool,
    /// Milliseconds between polls.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions {
            poll: false,
            interval_ms: 1000,
        }
    }
}

/// Jobs with more devices than this have their device list read every tenth poll only.
const DEVICES_EVERY_POLL_UP_TO: u64 = 10_000;
/// Reconnects to an event stream that ended before the job did, before polling instead.
const MAX_RECONNECTS: usize = 5;
/// How long a stopped job's stream is read on, for the devices that finished before the stop.
const STOPPED_GRACE: Duration = Duration::from_secs(1);

/// How a job's devices fall into batches: by their place in the job's order, as the server
/// numbers them (`ceil(total × percentage / 100)` or a number of devices per batch).
#[derive(Debug, Clone, Copy)]
pub struct Batches {
    size: usize,
    count: usize,
}

impl Batches {
    pub fn of(job: &Value, devices: usize) -> Batches {
        let total = job["progress"]["total"]
            .as_u64()
            .unwrap_or(devices as u64)
            .max(devices as u64);
        let value = &job["batch"]["value"];
        let batch = match job["batch"]["type"].as_str() {
            Some("number") => value.as_u64().map(Batch::Number),
            Some("percentage") => value.as_f64().map(Batch::Percentage),
            _ => None,
        };
        let size = batch.map(|b| b.size(total)).unwrap_or(total).max(1) as usize;
        Batches {
            size,
            count: (total as usize).div_ceil(size),
        }
    }

    pub fn of_position(&self, position: usize) -> usize {
        position / self.size
    }
}

/// The job's status as the API spells it.
fn status(job: &Value) -> Option<JobStatus> {
    status_of(job)
}

/// The exit code of a job that ended (or was stopped); `None` while it runs.
fn ended(status: JobStatus) -> Option<Exit> {
    match status {
        JobStatus::Complete => Some(Exit::Ok),
        JobStatus::Failed => Some(Exit::JobFailed),
        JobStatus::Cancelled => Some(Exit::JobCancelled),
        JobStatus::Stopped => Some(Exit::JobStopped),
        JobStatus::Pending | JobStatus::Running => None,
    }
}

pub async fn watch(
    client: &Client,
    id: &str,
    format: Format,
    options: &WatchOptions,
) -> Result<Exit> {
    let mut view = View::new(id, format);
    let streamed = if options.poll {
        None
    } else {
        follow_stream(client, id, &mut view).await?
    };
    let job = match streamed {
        Some(job) => job,
        None => poll(client, id, &mut view, options).await?,
    };
    view.finish(&job);
    Ok(status(&job).and_then(ended).unwrap_or(Exit::Failure))
}

/// Follows the job's event stream to its end: the job as it ended, or `None` when the server
/// has no stream (404, or an answer that is not an event stream) or it broke for good.
///
/// The stream ends with an `end` event once the job reached a final status. A stopped job's
/// stream stays open (it may be resumed): watch ends a second after the `stopped` status, once
/// the devices already finished have been replayed.
async fn follow_stream(client: &Client, id: &str, view: &mut View) -> Result<Option<Value>> {
    let url = client.url(&format!("{}/events", job_path(id)));
    let mut last_event_id: Option<String> = None;
    let mut last_status: Option<JobStatus> = None;
    for attempt in 0..=MAX_RECONNECTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let mut request = client
            .request(Method::GET, &url)
            .header(ACCEPT, "text/event-stream");
        if let Some(last) = &last_event_id {
            request = request.header("Last-Event-ID", last);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(_) if attempt > 0 => continue,
            Err(e) => return Err(unreachable(&url, e)),
        };
        let status = response.status();
        if status.as_u16() == 404 {
            // No stream here (IoT Central), or no such job: polling tells which.
            return Ok(None);
        }
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(CliError::Api(failure(status, &text)));
        }
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_stream {
            return Ok(None);
        }
        let mut parser = sse::Parser::default();
        let mut body = response.bytes_stream();
        let mut stopped_at: Option<tokio::time::Instant> = None;
        loop {
            let chunk = match stopped_at {
                Some(at) => match tokio::time::timeout_at(at + STOPPED_GRACE, body.next()).await {
                    Ok(chunk) => chunk,
                    Err(_) => return client.get(&job_path(id)).await.map(Some),
                },
                None => body.next().await,
            };
            let Some(Ok(chunk)) = chunk else { break };
            for event in parser.push(&chunk) {
                if event.id.is_some() {
                    last_event_id = event.id.clone();
                }
                let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
                    continue;
                };
                match event.name.as_str() {
                    "end" => return client.get(&job_path(id)).await.map(Some),
                    "status" | "progress" => {
                        if let Some(now) = status_of(&data) {
                            view.status(now.as_str());
                            last_status = Some(now);
                            if now == JobStatus::Stopped {
                                stopped_at.get_or_insert_with(tokio::time::Instant::now);
                            } else {
                                stopped_at = None;
                            }
                        }
                        if event.name == "progress" {
                            view.progress(&stream_progress(&data));
                        }
                    }
                    "device" if data["status"] == "failed" => {
                        let device_id = data["deviceId"].as_str().unwrap_or_default().to_string();
                        let batch = data["batch"].as_u64().map(|b| b as usize);
                        view.failure(&device_id, batch, &data);
                    }
                    _ => {}
                }
            }
        }
        // The stream closed without `end`: done if the job had ended, else resume it.
        if last_status.and_then(ended).is_some() {
            return client.get(&job_path(id)).await.map(Some);
        }
    }
    Ok(None)
}

/// A status in any letter case, and in the spellings other servers may use for the same ones.
fn status_of(data: &Value) -> Option<JobStatus> {
    let status = data["status"].as_str()?.to_ascii_lowercase();
    match status.as_str() {
        "completed" => Some(JobStatus::Complete),
        "canceled" => Some(JobStatus::Cancelled),
        other => other.parse().ok(),
    }
}

/// A `progress` event's counts.
fn stream_progress(data: &Value) -> Progress {
    let counts = |v: &Value| Counts {
        total: v["total"].as_u64().unwrap_or(0),
        completed: v["completed"].as_u64().unwrap_or(0),
        failed: v["failed"].as_u64().unwrap_or(0),
    };
    Progress {
        job: counts(data),
        batches: data["batches"]
            .as_array()
            .map(|b| b.iter().map(counts).collect())
            .unwrap_or_default(),
    }
}

/// Polls the job, and its devices for the batches and the failures, until it ends.
async fn poll(client: &Client, id: &str, view: &mut View, options: &WatchOptions) -> Result<Value> {
    let devices_path = format!("{}/devices", job_path(id));
    let interval = Duration::from_millis(options.interval_ms.max(100));
    let mut round: u64 = 0;
    loop {
        let job = client.get(&job_path(id)).await?;
        let now = status(&job);
        let done = now.and_then(ended).is_some();
        let progress = &job["progress"];
        let total = progress["total"].as_u64().unwrap_or(0);
        if done || total <= DEVICES_EVERY_POLL_UP_TO || round.is_multiple_of(10) {
            // Read after the job: once the job has ended, so have the devices listed.
            let devices = client.list(&devices_path).await?;
            let batches = Batches::of(&job, devices.len());
            let mut counts = vec![Counts::default(); batches.count];
            for (position, device) in devices.iter().enumerate() {
                let batch = batches.of_position(position);
                if let Some(c) = counts.get_mut(batch) {
                    c.total += 1;
                    match device["status"].as_str() {
                        Some("completed") => c.completed += 1,
                        Some("failed") => c.failed += 1,
                        _ => {}
                    }
                }
                if device["status"] == "failed" {
                    let device_id = device["id"].as_str().unwrap_or_default();
                    view.failure(device_id, Some(batch), device);
                }
            }
            view.progress(&Progress {
                job: job_counts(progress),
                batches: counts,
            });
        } else {
            view.progress(&Progress {
                job: job_counts(progress),
                batches: Vec::new(),
            });
        }
        // After the failures, so that a job's end is told after its last failure.
        if let Some(now) = now {
            view.status(now.as_str());
        }
        if done {
            return Ok(job);
        }
        round += 1;
        tokio::time::sleep(interval).await;
    }
}

fn job_counts(progress: &Value) -> Counts {
    Counts {
        total: progress["total"].as_u64().unwrap_or(0),
        completed: progress["completed"].as_u64().unwrap_or(0),
        failed: progress["failed"].as_u64().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn batches_follow_the_servers_numbering() {
        let job = json!({"batch": {"type": "percentage", "value": 25}, "progress": {"total": 10}});
        let batches = Batches::of(&job, 10);
        assert_eq!((batches.size, batches.count), (3, 4));
        assert_eq!(batches.of_position(9), 3);
        let whole = Batches::of(&json!({"progress": {"total": 5}}), 5);
        assert_eq!((whole.size, whole.count), (5, 1));
        let number = Batches::of(&json!({"batch": {"type": "number", "value": 2}}), 5);
        assert_eq!((number.size, number.count), (2, 3));
    }

    #[test]
    fn statuses_map_to_exit_codes() {
        assert_eq!(ended(JobStatus::Complete), Some(Exit::Ok));
        assert_eq!(ended(JobStatus::Cancelled), Some(Exit::JobCancelled));
        assert_eq!(ended(JobStatus::Stopped), Some(Exit::JobStopped));
        assert_eq!(ended(JobStatus::Running), None);
        assert_eq!(
            status(&json!({"status": "Complete"})),
            Some(JobStatus::Complete)
        );
        assert_eq!(
            status(&json!({"status": "canceled"})),
            Some(JobStatus::Cancelled)
        );
        assert_eq!(ended(JobStatus::Failed), Some(Exit::JobFailed));
    }

    /// A one-route-at-a-time HTTP server for the stream tests: answers each request with what
    /// `answer` gives for its head (status line and headers included), then closes.
    async fn serve(
        answer: impl Fn(&str) -> String + Send + 'static,
    ) -> (String, tokio::task::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && socket.read(&mut byte).await.unwrap_or(0) == 1
                {
                    head.push(byte[0]);
                }
                let reply = answer(&String::from_utf8_lossy(&head));
                let _ = socket.write_all(reply.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (base, task)
    }

    fn stream(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n{body}"
        )
    }

    fn json_reply(body: &Value) -> String {
        let body = body.to_string();
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn client(base: &str) -> Client {
        Client::new(
            reqwest::Client::new(),
            base,
            "token".into(),
            "2022-07-31".into(),
        )
    }

    #[tokio::test]
    async fn a_stream_that_breaks_is_resumed_after_its_last_event_id_until_end() {
        let (base, server) = serve(|head| {
            if head.starts_with("GET /api/jobs/j/events?api-version=2022-07-31 ") {
                if head.to_ascii_lowercase().contains("last-event-id: 7\r\n") {
                    // The resumed stream: the rest, then the end.
                    stream(
                        "event: status\ndata: {\"jobId\":\"j\",\"status\":\"cancelled\"}\n\n\
                         event: end\ndata: {\"jobId\":\"j\",\"status\":\"cancelled\"}\n\n",
                    )
                } else {
                    // The first stream breaks after a failed device.
                    stream(
                        ": keep-alive\n\nevent: status\ndata: {\"jobId\":\"j\",\"status\":\"running\"}\n\n\
                         event: progress\ndata: {\"jobId\":\"j\",\"status\":\"running\",\"total\":2,\"completed\":0,\"failed\":1,\"batches\":[]}\n\n\
                         id: 7\nevent: device\ndata: {\"jobId\":\"j\",\"deviceId\":\"d1\",\"status\":\"failed\",\"reasonCode\":\"offline\",\"reason\":\"gone\",\"batch\":0}\n\n",
                    )
                }
            } else if head.starts_with("GET /api/jobs/j?api-version=2022-07-31 ") {
                json_reply(&json!({"id": "j", "status": "cancelled", "progress": {"total": 2, "pending": 1, "completed": 0, "failed": 1}}))
            } else {
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            }
        })
        .await;
        let client = client(&base);
        let mut view = View::new("j", Format::Json);
        let job = follow_stream(&client, "j", &mut view).await.unwrap();
        assert_eq!(job.unwrap()["status"], "cancelled");
        server.abort();
    }

    #[tokio::test]
    async fn a_server_without_a_stream_is_polled() {
        let (base, server) = serve(|head| {
            if head.starts_with("GET /api/jobs/j/events") {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into()
            } else if head.starts_with("GET /api/jobs/j/devices") {
                json_reply(&json!({"value": [{"id": "d1", "status": "completed"}]}))
            } else {
                json_reply(&json!({"id": "j", "status": "complete", "progress": {"total": 1, "pending": 0, "completed": 1, "failed": 0}}))
            }
        })
        .await;
        let exit = watch(&client(&base), "j", Format::Json, &WatchOptions::default())
            .await
            .unwrap();
        assert_eq!(exit, Exit::Ok);
        server.abort();
    }
}
