//! SQL for `device_calls`: a call one server asks the server holding a device to make (a direct
//! method, or a desired patch to push), and its answer (cluster mode, PostgreSQL only). Each
//! write signals the other side in the same statement, so the signal goes out when the row is
//! committed; the signal carries only the call's id.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::corrupt;
use crate::signals::{REPLICA_CHANNEL_PREFIX, Signal};
use crate::{ReplicaId, Result, Store, now_ms};

/// What a call asks the holder to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    Invoke,
    Push,
}

impl CallKind {
    fn as_str(self) -> &'static str {
        match self {
            CallKind::Invoke => "invoke",
            CallKind::Push => "push",
        }
    }
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStatus {
    Pending,
    /// Made; `response` holds the outcome.
    Answered,
    /// Could not be made; `response` says why.
    Failed,
    /// The holder no longer holds the device: ask again wherever it is now.
    Moved,
}

impl CallStatus {
    fn as_str(self) -> &'static str {
        match self {
            CallStatus::Pending => "pending",
            CallStatus::Answered => "answered",
            CallStatus::Failed => "failed",
            CallStatus::Moved => "moved",
        }
    }

    fn parse(text: &str) -> Result<CallStatus> {
        Ok(match text {
            "pending" => CallStatus::Pending,
            "answered" => CallStatus::Answered,
            "failed" => CallStatus::Failed,
            "moved" => CallStatus::Moved,
            other => return Err(corrupt(format!("device call status {other}"))),
        })
    }
}

/// A call for the holder to make.
#[derive(Debug, Clone)]
pub struct DeviceCall {
    pub id: String,
    pub device_id: String,
    pub kind: CallKind,
    pub request: Value,
    pub deadline_ms: i64,
}

/// A call as its caller sees it while waiting.
#[derive(Debug, Clone)]
pub struct CallState {
    pub status: CallStatus,
    pub response: Option<Value>,
    /// Whether the server asked is still alive (an answer will not come from a dead one).
    pub holder_alive: bool,
}

fn json(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(corrupt)
}

fn call_from_row(row: &AnyRow) -> Result<DeviceCall> {
    let kind = match row.try_get::<String, _>("kind")?.as_str() {
        "invoke" => CallKind::Invoke,
        "push" => CallKind::Push,
        other => return Err(corrupt(format!("device call kind {other}"))),
    };
    Ok(DeviceCall {
        id: row.try_get("id")?,
        device_id: row.try_get("device_id")?,
        kind,
        request: json(&row.try_get::<String, _>("request")?)?,
        deadline_ms: row.try_get("deadline_ms")?,
    })
}

impl Store {
    /// Stores a call for `holder` to make and signals it, in one statement.
    pub async fn send_device_call(&self, holder: &ReplicaId, call: &DeviceCall) -> Result<()> {
        let signal = Signal::Call {
            call: call.id.clone(),
        };
        sqlx::query(&self.sql(
            "WITH sent AS ( \
                 INSERT INTO device_calls (id, device_id, caller, holder, kind, request, status, \
                 created_ms, deadline_ms) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?) RETURNING holder) \
             SELECT count(pg_notify(? || holder, ?)) AS sent FROM sent",
        ))
        .bind(&call.id)
        .bind(&call.device_id)
        .bind(self.replica().as_str())
        .bind(holder.as_str())
        .bind(call.kind.as_str())
        .bind(call.request.to_string())
        .bind(now_ms())
        .bind(call.deadline_ms)
        .bind(REPLICA_CHANNEL_PREFIX)
        .bind(signal.payload())
        .fetch_one(&self.pool)
        .await?;
        Ok(())
    }

    /// A pending call addressed to this server, unless its deadline passed.
    pub async fn pending_device_call(&self, id: &str) -> Result<Option<DeviceCall>> {
        let row = sqlx::query(&self.sql(
            "SELECT id, device_id, kind, request, deadline_ms FROM device_calls \
             WHERE id = ? AND holder = ? AND status = 'pending' AND deadline_ms > ?",
        ))
        .bind(id)
        .bind(self.replica().as_str())
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// The ids of every pending call addressed to this server (after a listener reconnect).
    pub async fn pending_device_call_ids(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(&self.sql(
            "SELECT id FROM device_calls WHERE holder = ? AND status = 'pending' AND deadline_ms > ?",
        ))
        .bind(self.replica().as_str())
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| row.try_get("id").map_err(Into::into))
            .collect()
    }

    /// Answers a pending call addressed to this server and signals its caller, in one
    /// statement.
    pub async fn answer_device_call(
        &self,
        id: &str,
        status: CallStatus,
        response: &Value,
    ) -> Result<()> {
        let signal = Signal::CallDone {
            call: id.to_string(),
        };
        sqlx::query(&self.sql(
            "WITH answered AS ( \
                 UPDATE device_calls SET status = ?, response = ? \
                 WHERE id = ? AND holder = ? AND status = 'pending' RETURNING caller) \
             SELECT count(pg_notify(? || caller, ?)) AS sent FROM answered",
        ))
        .bind(status.as_str())
        .bind(response.to_string())
        .bind(id)
        .bind(self.replica().as_str())
        .bind(REPLICA_CHANNEL_PREFIX)
        .bind(signal.payload())
        .fetch_one(&self.pool)
        .await?;
        Ok(())
    }

    /// A call this server made: its status, answer, and whether the server asked is alive.
    pub async fn device_call_state(&self, id: &str) -> Result<Option<CallState>> {
        let row = sqlx::query(&self.sql(&format!(
            "SELECT c.status, c.response, \
             (CASE WHEN {} THEN 1 ELSE 0 END) AS holder_alive \
             FROM device_calls c LEFT JOIN replicas r ON r.id = c.holder \
             WHERE c.id = ? AND c.caller = ?",
            self.replica_alive("r")
        )))
        .bind(id)
        .bind(self.replica().as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let response: Option<String> = row.try_get("response")?;
        Ok(Some(CallState {
            status: CallStatus::parse(&row.try_get::<String, _>("status")?)?,
            response: response.as_deref().map(json).transpose()?,
            holder_alive: row.try_get::<i32, _>("holder_alive")? == 1,
        }))
    }

    /// Deletes a call this server made, once it is done with it.
    pub async fn forget_device_call(&self, id: &str) -> Result<()> {
        sqlx::query(&self.sql("DELETE FROM device_calls WHERE id = ? AND caller = ?"))
            .bind(id)
            .bind(self.replica().as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
