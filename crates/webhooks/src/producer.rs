//! Turns what changed in jobs into deliveries: for each webhook and each job created after it,
//! the difference between the job's rows and the webhook's cursor on the job (the last status,
//! finish sequence and progress it was sent) becomes deliveries, written in the transaction
//! that moves the cursor (a compare-and-swap: a server that lost the race writes nothing).

use flotilla_model::job_events::JobDeviceEvent;
use flotilla_model::keys::random_hex;
use flotilla_model::webhook::{Webhook, WebhookEvent};
use flotilla_store::{JobEventState, NewDelivery, Store, StoreError, WebhookCursor};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::WebhookConfig;

/// Jobs looked at per webhook per pass (the rest on the next).
const JOBS_PER_PASS: usize = 200;
/// Devices per `job.device` delivery.
const DEVICES_PER_DELIVERY: usize = 500;

pub(crate) async fn run(store: Store, config: WebhookConfig, stopping: CancellationToken) {
    loop {
        tokio::select! {
            () = stopping.cancelled() => return,
            () = tokio::time::sleep(config.produce_every) => {}
        }
        let pass = pass(&store, &config);
        tokio::select! {
            () = stopping.cancelled() => return,
            done = pass => if let Err(e) = done
                && !matches!(e, StoreError::Fenced)
            {
                tracing::warn!(error = %e, "making webhook deliveries failed");
            },
        }
    }
}

async fn pass(store: &Store, config: &WebhookConfig) -> Result<(), StoreError> {
    for (webhook, created_ms) in store.webhooks_with_creation().await? {
        let changes = store
            .webhook_job_changes(&webhook.id, created_ms, JOBS_PER_PASS)
            .await?;
        for (job_id, state, cursor) in changes {
            advance(store, config, &webhook, &job_id, &state, cursor).await?;
        }
    }
    Ok(())
}

/// The `job.device` delivery's data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceBatch {
    job_id: String,
    devices: Vec<JobDeviceEvent>,
}

/// Makes the deliveries one job's changes call for, and moves the cursor past them.
async fn advance(
    store: &Store,
    config: &WebhookConfig,
    webhook: &Webhook,
    job_id: &str,
    state: &JobEventState,
    old: Option<WebhookCursor>,
) -> Result<(), StoreError> {
    let now = jiff::Timestamp::now().as_millisecond();
    // A job first seen: every status, device and progress of it is news.
    let mut new = old.clone().unwrap_or(WebhookCursor {
        status: String::new(),
        device_seq: 0,
        progress_done: -1,
        progress_ms: 0,
    });
    let mut deliveries = Vec::new();
    let mut deliver = |event: WebhookEvent, data: serde_json::Value| {
        let id = format!("{now:013}-{:03}-{}", deliveries.len(), random_hex::<4>());
        let body = json!({
            "id": id,
            "type": event.as_str(),
            "time": flotilla_model::api_token::format_time(jiff::Timestamp::now()),
            "data": data,
        });
        deliveries.push(NewDelivery {
            id,
            event,
            body: body.to_string(),
        });
    };

    if state.device_seq > new.device_seq {
        if webhook.wants(WebhookEvent::JobDevice) {
            let devices = store
                .finished_job_devices(job_id, new.device_seq, DEVICES_PER_DELIVERY)
                .await?;
            if let Some(last) = devices.last() {
                new.device_seq = last.sequence;
            }
            // Not cut short: every finish numbered up to the row's counter was read (the row
            // was read before), so the numbers no device took are passed too.
            if devices.len() < DEVICES_PER_DELIVERY {
                new.device_seq = new.device_seq.max(state.device_seq);
            }
            if !devices.is_empty() {
                let data = DeviceBatch {
                    job_id: job_id.to_string(),
                    devices: devices.iter().map(|d| d.event(job_id)).collect(),
                };
                deliver(WebhookEvent::JobDevice, json!(data));
            }
        } else {
            new.device_seq = state.device_seq;
        }
    }
    if new.status != state.status.as_str() {
        if webhook.wants(WebhookEvent::JobStatus) {
            deliver(WebhookEvent::JobStatus, json!(state.status_event(job_id)));
        }
        new.status = state.status.as_str().to_string();
    }
    let done = state.completed + state.failed;
    if done != new.progress_done {
        if !webhook.wants(WebhookEvent::JobProgress) {
            new.progress_done = done;
        } else if state.status.is_final()
            || now - new.progress_ms >= config.progress_every.as_millis() as i64
        {
            let batches = store.job_batch_counts(job_id).await?;
            deliver(
                WebhookEvent::JobProgress,
                json!(state.progress_event(job_id, &batches)),
            );
            new.progress_done = done;
            new.progress_ms = now;
        }
    }
    if old.as_ref() == Some(&new) {
        return Ok(());
    }
    let moved = store
        .advance_webhook_cursor(&webhook.id, job_id, old.as_ref(), &new, &deliveries)
        .await?;
    if !moved {
        tracing::debug!(webhook = %webhook.id, job = %job_id, "another server made these deliveries");
    }
    Ok(())
}
