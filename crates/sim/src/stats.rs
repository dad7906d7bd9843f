//! Fleet-wide counters, the progress line and the final summary.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Counters every device updates; gauges (`connected`, `offline`) go up and down.
#[derive(Default)]
pub struct Stats {
    pub provisioned: AtomicU64,
    pub provision_failures: AtomicU64,
    pub connected: AtomicI64,
    pub peak_connected: AtomicI64,
    /// Devices that have connected to the hub at least once.
    pub ever_connected: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Connections that ended without the device choosing to end them.
    pub dropped: AtomicU64,
    pub offline: AtomicI64,
    pub desired_patches: AtomicU64,
    /// Writable properties acknowledged (one reported patch may hold several).
    pub acks: AtomicU64,
    /// Reported patches (acknowledgements) the server answered with an error status.
    pub ack_errors: AtomicU64,
    pub methods_answered: AtomicU64,
    /// Of those, answered with 500 because the device is one of `--fail-fraction`.
    pub methods_failed: AtomicU64,
    /// Direct method requests received, per device: a test of several servers checks that no
    /// device was asked twice.
    pub method_calls: Mutex<BTreeMap<String, u64>>,
    pub connect_ms_total: AtomicU64,
    pub connect_ms_max: AtomicU64,
    pub all_provisioned_after: OnceLock<Duration>,
    pub all_connected_after: OnceLock<Duration>,
    pub last_error: Mutex<Option<String>>,
}

impl Stats {
    pub fn add(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn connected(&self) {
        let now = self.connected.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_connected.fetch_max(now, Ordering::Relaxed);
    }

    pub fn disconnected(&self) {
        self.connected.fetch_sub(1, Ordering::Relaxed);
    }

    /// A direct method request reached the device.
    pub fn method_called(&self, device_id: &str) {
        *self
            .method_calls
            .lock()
            .unwrap()
            .entry(device_id.to_string())
            .or_default() += 1;
    }

    pub fn connect_time(&self, took: Duration) {
        let ms = took.as_millis() as u64;
        self.connect_ms_total.fetch_add(ms, Ordering::Relaxed);
        self.connect_ms_max.fetch_max(ms, Ordering::Relaxed);
    }

    pub fn error(&self, device_id: &str, what: &str, error: &dyn std::fmt::Display) {
        tracing::debug!(device = device_id, %error, "{what}");
        *self.last_error.lock().unwrap() = Some(format!("{device_id}: {what}: {error}"));
    }

    pub fn snapshot(&self, devices: usize, elapsed: Duration) -> Summary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let connects = get(&self.connects);
        Summary {
            elapsed_secs: round(elapsed.as_secs_f64()),
            devices,
            provisioned: get(&self.provisioned),
            provision_failures: get(&self.provision_failures),
            all_provisioned_after_secs: self
                .all_provisioned_after
                .get()
                .map(|d| round(d.as_secs_f64())),
            connected: self.connected.load(Ordering::Relaxed).max(0) as u64,
            peak_connected: self.peak_connected.load(Ordering::Relaxed).max(0) as u64,
            ever_connected: get(&self.ever_connected),
            all_connected_after_secs: self
                .all_connected_after
                .get()
                .map(|d| round(d.as_secs_f64())),
            connects,
            connect_failures: get(&self.connect_failures),
            dropped: get(&self.dropped),
            offline: self.offline.load(Ordering::Relaxed).max(0) as u64,
            connect_ms_avg: get(&self.connect_ms_total)
                .checked_div(connects)
                .unwrap_or(0),
            connect_ms_max: get(&self.connect_ms_max),
            desired_patches: get(&self.desired_patches),
            acks: get(&self.acks),
            ack_errors: get(&self.ack_errors),
            methods_answered: get(&self.methods_answered),
            methods_failed: get(&self.methods_failed),
            // Only the final summary lists them (`with_method_calls`).
            method_calls_by_device: BTreeMap::new(),
            last_error: self.last_error.lock().unwrap().clone(),
        }
    }
}

impl Summary {
    /// The summary with each device's direct method requests (for the final one).
    pub fn with_method_calls(mut self, stats: &Stats) -> Summary {
        self.method_calls_by_device = stats.method_calls.lock().unwrap().clone();
        self
    }
}

fn round(secs: f64) -> f64 {
    (secs * 10.0).round() / 10.0
}

/// Where a run stands (or ended), as printed and as written to `--summary`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub elapsed_secs: f64,
    pub devices: usize,
    pub provisioned: u64,
    pub provision_failures: u64,
    pub all_provisioned_after_secs: Option<f64>,
    pub connected: u64,
    pub peak_connected: u64,
    pub ever_connected: u64,
    pub all_connected_after_secs: Option<f64>,
    pub connects: u64,
    pub connect_failures: u64,
    pub dropped: u64,
    pub offline: u64,
    pub connect_ms_avg: u64,
    pub connect_ms_max: u64,
    pub desired_patches: u64,
    pub acks: u64,
    pub ack_errors: u64,
    pub methods_answered: u64,
    pub methods_failed: u64,
    /// Direct method requests each device received (devices that received none are left out).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub method_calls_by_device: BTreeMap<String, u64>,
    pub last_error: Option<String>,
}

impl Summary {
    /// One progress line.
    pub fn line(&self, with_dps: bool) -> String {
        let provisioned = if with_dps {
            format!(", provisioned {}", self.provisioned)
        } else {
            String::new()
        };
        let provision_failures = if with_dps {
            format!("provision {}, ", self.provision_failures)
        } else {
            String::new()
        };
        format!(
            "[{:>7.1}s] connected {}/{} (peak {}){provisioned}, offline {}, acks {}, methods {} \
             (500: {}); failures: {provision_failures}connect {}, dropped {}, refused acks {}",
            self.elapsed_secs,
            self.connected,
            self.devices,
            self.peak_connected,
            self.offline,
            self.acks,
            self.methods_answered,
            self.methods_failed,
            self.connect_failures,
            self.dropped,
            self.ack_errors,
        )
    }

    /// The final report.
    pub fn report(&self, with_dps: bool) -> String {
        let after = |secs: Option<f64>| match secs {
            Some(s) => format!("all after {s:.1} s"),
            None => "not all".to_string(),
        };
        let mut out = format!(
            "summary after {:.1} s, {} devices\n",
            self.elapsed_secs, self.devices
        );
        if with_dps {
            out += &format!(
                "  provisioned      {} ({}), failures {}\n",
                self.provisioned,
                after(self.all_provisioned_after_secs),
                self.provision_failures
            );
        }
        out += &format!(
            "  connected        {} at the end, peak {}, {} ever ({})\n",
            self.connected,
            self.peak_connected,
            self.ever_connected,
            after(self.all_connected_after_secs)
        );
        out += &format!(
            "  connections      {} made (avg {} ms, max {} ms to CONNACK), {} failed, {} dropped\n",
            self.connects,
            self.connect_ms_avg,
            self.connect_ms_max,
            self.connect_failures,
            self.dropped
        );
        out += &format!(
            "  properties       {} desired patches, {} acknowledged, {} acknowledgements refused\n",
            self.desired_patches, self.acks, self.ack_errors
        );
        out += &format!(
            "  methods          {} answered ({} with 500 on purpose)\n",
            self.methods_answered, self.methods_failed
        );
        if let Some(error) = &self.last_error {
            out += &format!("  last error       {error}\n");
        }
        out
    }
}
