//! Sends due deliveries: claims them (so no other server sends them meanwhile), POSTs each with
//! its signature, and records the outcome: delivered on a 2xx answer, else tried again after a
//! backoff that doubles up to a cap, until the attempts run out.

use std::time::Duration;

use flotilla_store::{ClaimedDelivery, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::WebhookConfig;
use crate::signature::sign;

/// Deliveries claimed per look.
const CLAIM: usize = 20;
/// Where the system's roots for HTTPS receivers are read from (Debian's bundle), unless
/// `SSL_CERT_FILE` names another.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

pub(crate) async fn run(store: Store, config: WebhookConfig, stopping: CancellationToken) {
    let client = match client(&config) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhooks cannot be sent: the HTTP client did not start");
            return;
        }
    };
    loop {
        tokio::select! {
            () = stopping.cancelled() => return,
            () = tokio::time::sleep(config.send_every) => {}
        }
        let claimed = match store
            .claim_webhook_deliveries(CLAIM, claim_ms(&config))
            .await
        {
            Ok(claimed) => claimed,
            Err(StoreError::Fenced) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "claiming webhook deliveries failed");
                continue;
            }
        };
        if claimed.is_empty() {
            continue;
        }
        let ids: Vec<String> = claimed.iter().map(|d| d.id.clone()).collect();
        let attempts = futures_util::future::join_all(
            claimed
                .into_iter()
                .map(|d| attempt(&store, &client, &config, d)),
        );
        tokio::select! {
            _ = attempts => {}
            () = stopping.cancelled() => {
                // Cut short: let the deliveries go at once rather than when the claim runs out.
                if let Err(e) = store.release_webhook_claims(&ids).await {
                    tracing::warn!(error = %e, "releasing webhook deliveries failed");
                }
                return;
            }
        }
    }
}

/// A claim outlasts an attempt's deadline, so a live sender never loses one mid-attempt.
fn claim_ms(config: &WebhookConfig) -> i64 {
    (config.timeout + Duration::from_secs(5)).as_millis() as i64
}

fn client(config: &WebhookConfig) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("flotilla-webhooks/", env!("CARGO_PKG_VERSION")));
    let roots = std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| SYSTEM_ROOTS.to_string());
    match std::fs::read(&roots) {
        Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certificates) => {
                for certificate in certificates {
                    builder = builder.add_root_certificate(certificate);
                }
            }
            Err(e) => {
                tracing::warn!(%roots, error = %e, "the system's roots cannot be read: https webhooks will fail")
            }
        },
        Err(e) => tracing::warn!(%roots, error = %e, "no system roots: https webhooks will fail"),
    }
    builder.build()
}

/// The wait before attempt `attempts + 1`.
fn backoff(config: &WebhookConfig, attempts: i64) -> Duration {
    let doublings = (attempts - 1).clamp(0, 30) as u32;
    config
        .first_backoff
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(config.max_backoff)
}

async fn attempt(
    store: &Store,
    client: &reqwest::Client,
    config: &WebhookConfig,
    delivery: ClaimedDelivery,
) {
    let outcome = client
        .post(&delivery.url)
        .header("content-type", "application/json")
        .header("x-flotilla-event", &delivery.event)
        .header("x-flotilla-delivery", &delivery.id)
        .header(
            "x-flotilla-signature",
            sign(&delivery.secret, delivery.body.as_bytes()),
        )
        .body(delivery.body.clone())
        .send()
        .await;
    let recorded = match outcome {
        Ok(response) if response.status().is_success() => {
            tracing::debug!(delivery = %delivery.id, webhook = %delivery.webhook_id, "webhook delivered");
            store
                .webhook_delivered(&delivery.id, response.status().as_u16())
                .await
        }
        failed => {
            let (status, error) = match failed {
                Ok(response) => (
                    Some(response.status().as_u16()),
                    format!("the receiver answered {}", response.status()),
                ),
                Err(e) => (None, describe(&e)),
            };
            let next = jiff::Timestamp::now().as_millisecond()
                + backoff(config, delivery.attempts).as_millis() as i64;
            if delivery.attempts >= config.max_attempts {
                tracing::warn!(delivery = %delivery.id, webhook = %delivery.webhook_id, %error, "webhook delivery failed for good");
            }
            store
                .webhook_attempt_failed(&delivery.id, status, &error, next, config.max_attempts)
                .await
        }
    };
    if let Err(e) = recorded {
        tracing::warn!(delivery = %delivery.id, error = %e, "recording a webhook attempt failed");
    }
}

/// An error's whole chain, for the history (reqwest's own message names only its kind).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = WebhookConfig::default();
        let waits: Vec<u64> = (1..=11).map(|n| backoff(&config, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }
}
