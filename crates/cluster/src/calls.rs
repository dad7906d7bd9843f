//! Device calls between servers: how a call's request and answer are written in its row, and
//! the callers waiting for answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_bus::{InvokeError, MethodCall, MethodResponse};
use flotilla_store::CallStatus;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// A direct method call as its row holds it. The connect timeout is what is left of the
/// caller's.
pub(crate) fn invoke_request(call: &MethodCall, connect_timeout: Duration) -> Value {
    json!({
        "method": call.method,
        "payload": call.payload,
        "connectTimeoutMs": connect_timeout.as_millis() as u64,
        "responseTimeoutMs": call.response_timeout.as_millis() as u64,
    })
}

/// The method call a row asks for; `None` when the row is not one.
pub(crate) fn method_call(request: &Value) -> Option<MethodCall> {
    Some(MethodCall {
        method: request["method"].as_str()?.to_string(),
        payload: request["payload"].clone(),
        connect_timeout: Duration::from_millis(request["connectTimeoutMs"].as_u64()?),
        response_timeout: Duration::from_millis(request["responseTimeoutMs"].as_u64()?),
    })
}

/// How a method call's outcome is written as its answer.
pub(crate) fn invoke_answer(outcome: &Result<MethodResponse, InvokeError>) -> (CallStatus, Value) {
    match outcome {
        Ok(response) => (
            CallStatus::Answered,
            json!({"status": response.status, "payload": response.payload}),
        ),
        Err(error) => {
            let reason = match error {
                InvokeError::NotConnected => "notConnected",
                InvokeError::NotSubscribed => "notSubscribed",
                InvokeError::Timeout => "timeout",
                InvokeError::HolderLost => "holderLost",
            };
            (CallStatus::Failed, json!({ "error": reason }))
        }
    }
}

/// A method call's outcome from its answer.
pub(crate) fn invoke_outcome(
    status: CallStatus,
    answer: Option<&Value>,
) -> Result<MethodResponse, InvokeError> {
    let answer = answer.unwrap_or(&Value::Null);
    match status {
        CallStatus::Answered => Ok(MethodResponse {
            status: answer["status"].as_i64().unwrap_or(200),
            payload: answer["payload"].clone(),
        }),
        _ => Err(match answer["error"].as_str() {
            Some("notSubscribed") => InvokeError::NotSubscribed,
            Some("timeout") => InvokeError::Timeout,
            Some("holderLost") => InvokeError::HolderLost,
            _ => InvokeError::NotConnected,
        }),
    }
}

/// Callers waiting for answers, by call id. A `Notify` keeps a wake-up that comes before its
/// caller waits, so an answer signalled at once is not missed.
#[derive(Default)]
pub(crate) struct Waiters(Mutex<HashMap<String, Arc<Notify>>>);

impl Waiters {
    pub(crate) fn register(&self, call: &str) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.0
            .lock()
            .unwrap()
            .insert(call.to_string(), notify.clone());
        notify
    }

    pub(crate) fn remove(&self, call: &str) {
        self.0.lock().unwrap().remove(call);
    }

    /// The call was answered: its caller reads the row now.
    pub(crate) fn wake(&self, call: &str) {
        if let Some(notify) = self.0.lock().unwrap().get(call) {
            notify.notify_one();
        }
    }

    /// Signals may have been lost: every caller reads its row now.
    pub(crate) fn wake_all(&self) {
        for notify in self.0.lock().unwrap().values() {
            notify.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_call_and_its_outcomes_survive_the_row() {
        let call = MethodCall {
            method: "thermostat*reboot".into(),
            payload: json!({"delay": 3}),
            connect_timeout: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
        };
        let request = invoke_request(&call, Duration::from_millis(1500));
        let back = method_call(&request).unwrap();
        assert_eq!(back.connect_timeout, Duration::from_millis(1500));
        assert_eq!(
            MethodCall {
                connect_timeout: call.connect_timeout,
                ..back
            },
            call
        );
        let answered = Ok(MethodResponse {
            status: 201,
            payload: json!({"ok": true}),
        });
        for outcome in [
            answered,
            Err(InvokeError::NotConnected),
            Err(InvokeError::NotSubscribed),
            Err(InvokeError::Timeout),
            Err(InvokeError::HolderLost),
        ] {
            let (status, answer) = invoke_answer(&outcome);
            assert_eq!(invoke_outcome(status, Some(&answer)), outcome);
        }
    }
}
