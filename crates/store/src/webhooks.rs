//! SQL for webhooks: `webhooks` (where and what), `webhook_cursors` (what each webhook was last
//! sent about each job) and `webhook_deliveries` (the outbox, and the history).

use flotilla_model::webhook::{Webhook, WebhookEvent};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::corrupt;
use crate::job_events::JobEventState;
use crate::{Entity, Page, PageRequest, Result, Store, StoreError, into_page, now_ms};

/// What a webhook was last sent about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookCursor {
    pub status: String,
    /// The job's finish sequence up to which devices were sent (or skipped).
    pub device_seq: i64,
    /// `completed + failed` when progress was last sent (or skipped), and when.
    pub progress_done: i64,
    pub progress_ms: i64,
}

/// A delivery to add to the outbox.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub event: WebhookEvent,
    pub body: String,
}

/// A delivery this server claimed, with where it goes.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    pub body: String,
    /// Counting this one.
    pub attempts: i64,
    pub url: String,
    pub secret: String,
}

/// A delivery as its history shows it.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: String,
    pub event: String,
    pub status: String,
    pub attempts: i64,
    pub response_status: Option<i64>,
    pub error: Option<String>,
    pub created_ms: i64,
    pub last_attempt_ms: Option<i64>,
    pub next_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    pub body: String,
}

fn webhook_from_row(row: &AnyRow) -> Result<Webhook> {
    let events: Value =
        serde_json::from_str(&row.try_get::<String, _>("events")?).map_err(corrupt)?;
    let events = events
        .as_array()
        .ok_or_else(|| corrupt("a webhook's events are not an array"))?
        .iter()
        .map(|e| {
            e.as_str()
                .and_then(WebhookEvent::parse)
                .ok_or_else(|| corrupt(format!("an unknown webhook event {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Webhook {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        secret: row.try_get("secret")?,
        events,
        display_name: row.try_get("display_name")?,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRecord> {
    let status: String = row.try_get("status")?;
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        event: row.try_get("event")?,
        attempts: row.try_get("attempts")?,
        response_status: row.try_get("response_status")?,
        error: row.try_get("error")?,
        created_ms: row.try_get("created_ms")?,
        last_attempt_ms: row.try_get("last_attempt_ms")?,
        next_ms: (status == "pending")
            .then(|| row.try_get("next_ms"))
            .transpose()?,
        delivered_ms: row.try_get("delivered_ms")?,
        body: row.try_get("body")?,
        status,
    })
}

impl Store {
    /// Creates or replaces a webhook (a replaced one keeps its creation time, cursors and
    /// history); whether it was created.
    pub async fn put_webhook(&self, webhook: &Webhook) -> Result<bool> {
        let events = Value::from(
            webhook
                .events
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>(),
        )
        .to_string();
        let mut tx = self.begin_write().await?;
        let existed = sqlx::query(&self.sql("SELECT 1 AS one FROM webhooks WHERE id = ?"))
            .bind(&webhook.id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query(&self.sql(
            "INSERT INTO webhooks (id, url, secret, events, display_name, created_ms) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET url = excluded.url, \
             secret = excluded.secret, events = excluded.events, \
             display_name = excluded.display_name",
        ))
        .bind(&webhook.id)
        .bind(&webhook.url)
        .bind(&webhook.secret)
        .bind(events)
        .bind(webhook.display_name.as_deref())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(!existed)
    }

    pub async fn webhook(&self, id: &str) -> Result<Option<Webhook>> {
        self.row_by_id("webhooks", "*", id, webhook_from_row).await
    }

    pub async fn list_webhooks(&self, page: PageRequest<'_>) -> Result<Page<Webhook>> {
        self.page_of("webhooks", "*", page, webhook_from_row).await
    }

    /// Every webhook, with its creation time (what the producer of deliveries walks).
    pub async fn webhooks_with_creation(&self) -> Result<Vec<(Webhook, i64)>> {
        let rows = sqlx::query("SELECT * FROM webhooks ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((webhook_from_row(r)?, r.try_get("created_ms")?)))
            .collect()
    }

    /// Deletes a webhook with its cursors and deliveries; `NotFound` when there was none.
    pub async fn delete_webhook(&self, id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for table in ["webhook_deliveries", "webhook_cursors"] {
            sqlx::query(&self.sql(&format!("DELETE FROM {table} WHERE webhook_id = ?")))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let deleted = sqlx::query(&self.sql("DELETE FROM webhooks WHERE id = ?"))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::not_found(Entity::Webhook, id));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Jobs created at or after `since_ms` that changed since this webhook's cursor on them
    /// (or that it has no cursor on), oldest first, at most `limit`.
    pub async fn webhook_job_changes(
        &self,
        webhook_id: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<(String, JobEventState, Option<WebhookCursor>)>> {
        let rows = sqlx::query(&self.sql(
            "SELECT j.id AS id, j.status AS status, j.reason AS reason, j.total AS total, \
             j.completed AS completed, j.failed AS failed, j.device_seq AS device_seq, \
             j.created_ms AS created_ms, c.status AS c_status, c.device_seq AS c_seq, \
             c.progress_done AS c_done, c.progress_ms AS c_ms \
             FROM jobs j LEFT JOIN webhook_cursors c ON c.webhook_id = ? AND c.job_id = j.id \
             WHERE j.created_ms >= ? AND (c.job_id IS NULL OR c.status <> j.status \
             OR c.device_seq < j.device_seq OR c.progress_done <> j.completed + j.failed) \
             ORDER BY j.sort_key LIMIT ?",
        ))
        .bind(webhook_id)
        .bind(since_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let cursor = match r.try_get::<Option<String>, _>("c_status")? {
                    Some(status) => Some(WebhookCursor {
                        status,
                        device_seq: r.try_get("c_seq")?,
                        progress_done: r.try_get("c_done")?,
                        progress_ms: r.try_get("c_ms")?,
                    }),
                    None => None,
                };
                Ok((
                    r.try_get("id")?,
                    crate::job_events::state_from_row(r)?,
                    cursor,
                ))
            })
            .collect()
    }

    /// Moves a webhook's cursor on a job from `old` to `new` and queues `deliveries`, in one
    /// transaction; `false` (and nothing written) when the cursor was no longer `old` (another
    /// server got there first).
    pub async fn advance_webhook_cursor(
        &self,
        webhook_id: &str,
        job_id: &str,
        old: Option<&WebhookCursor>,
        new: &WebhookCursor,
        deliveries: &[NewDelivery],
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let moved = match old {
            None => sqlx::query(&self.sql(
                "INSERT INTO webhook_cursors (webhook_id, job_id, status, device_seq, \
                 progress_done, progress_ms) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            ))
            .bind(webhook_id)
            .bind(job_id)
            .bind(&new.status)
            .bind(new.device_seq)
            .bind(new.progress_done)
            .bind(new.progress_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Some(old) => sqlx::query(&self.sql(
                "UPDATE webhook_cursors SET status = ?, device_seq = ?, progress_done = ?, \
                 progress_ms = ? WHERE webhook_id = ? AND job_id = ? AND status = ? \
                 AND device_seq = ? AND progress_done = ? AND progress_ms = ?",
            ))
            .bind(&new.status)
            .bind(new.device_seq)
            .bind(new.progress_done)
            .bind(new.progress_ms)
            .bind(webhook_id)
            .bind(job_id)
            .bind(&old.status)
            .bind(old.device_seq)
            .bind(old.progress_done)
            .bind(old.progress_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if moved != 1 {
            return Ok(false);
        }
        let now = now_ms();
        for delivery in deliveries {
            sqlx::query(&self.sql(
                "INSERT INTO webhook_deliveries (id, webhook_id, event, body, status, next_ms, \
                 created_ms) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
            ))
            .bind(&delivery.id)
            .bind(webhook_id)
            .bind(delivery.event.as_str())
            .bind(&delivery.body)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Claims up to `limit` due deliveries for `claim_ms` (counting the attempt about to be
    /// made): another server skips them meanwhile, and takes them again once the claim runs out
    /// (this server died mid-attempt).
    pub async fn claim_webhook_deliveries(
        &self,
        limit: usize,
        claim_ms: i64,
    ) -> Result<Vec<ClaimedDelivery>> {
        let skip_locked = match self.dialect {
            crate::Dialect::Sqlite => "",
            crate::Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(&self.sql(&format!(
            "UPDATE webhook_deliveries SET claimed_until = ?, attempts = attempts + 1, \
             last_attempt_ms = ? WHERE id IN (SELECT id FROM webhook_deliveries \
             WHERE status = 'pending' AND next_ms <= ? \
             AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY next_ms LIMIT ?{skip_locked}) \
             RETURNING id, webhook_id, event, body, attempts"
        )))
        .bind(now + claim_ms)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let webhook_id: String = row.try_get("webhook_id")?;
            // Deleted meanwhile: its deliveries went with it.
            let Some(webhook) = self.webhook(&webhook_id).await? else {
                continue;
            };
            claimed.push(ClaimedDelivery {
                id: row.try_get("id")?,
                webhook_id,
                event: row.try_get("event")?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
                url: webhook.url,
                secret: webhook.secret,
            });
        }
        Ok(claimed)
    }

    /// Records a delivered attempt.
    pub async fn webhook_delivered(&self, id: &str, response_status: u16) -> Result<()> {
        sqlx::query(&self.sql(
            "UPDATE webhook_deliveries SET status = 'delivered', delivered_ms = ?, \
             response_status = ?, error = NULL, claimed_until = NULL WHERE id = ?",
        ))
        .bind(now_ms())
        .bind(response_status as i64)
        .bind(id)
        .execute(&*self.writing().await)
        .await?;
        Ok(())
    }

    /// Records a failed attempt: tried again at `next_ms`, or `failed` for good once
    /// `max_attempts` were made.
    pub async fn webhook_attempt_failed(
        &self,
        id: &str,
        response_status: Option<u16>,
        error: &str,
        next_ms: i64,
        max_attempts: i64,
    ) -> Result<()> {
        sqlx::query(&self.sql(
            "UPDATE webhook_deliveries SET status = CASE WHEN attempts >= ? THEN 'failed' \
             ELSE 'pending' END, next_ms = ?, response_status = ?, error = ?, \
             claimed_until = NULL WHERE id = ?",
        ))
        .bind(max_attempts)
        .bind(next_ms)
        .bind(response_status.map(i64::from))
        .bind(error)
        .bind(id)
        .execute(&*self.writing().await)
        .await?;
        Ok(())
    }

    /// A page of a webhook's deliveries, newest first (keyset on the id, which sorts by time).
    pub async fn webhook_deliveries(
        &self,
        webhook_id: &str,
        before: Option<&str>,
        size: usize,
    ) -> Result<Page<DeliveryRecord>> {
        let rows = sqlx::query(&self.sql(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = ? AND id < ? \
             ORDER BY id DESC LIMIT ?",
        ))
        .bind(webhook_id)
        .bind(before.unwrap_or("\u{10FFFF}"))
        .bind(size as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(into_page(items, size))
    }
}

impl Store {
    /// Lets claimed deliveries go (a stopping server's attempts in flight), due at once.
    pub async fn release_webhook_claims(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = self.sql(&format!(
            "UPDATE webhook_deliveries SET claimed_until = NULL WHERE status = 'pending' \
             AND id IN ({})",
            crate::bulk::marks(ids.len())
        ));
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id);
        }
        query.execute(&*self.writing().await).await?;
        Ok(())
    }
}
