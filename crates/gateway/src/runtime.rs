//! The runtime device work runs on: connections (TLS, MQTT, twin reads and writes) and the job
//! engine's per-device tasks. It is separate from the runtime that serves the REST API, so a
//! job that keeps both cores busy with thousands of devices does not queue API requests behind
//! its tasks: the operating system shares the CPU between the two runtimes' threads, and its
//! threads run at a lower priority, so a request's thread, woken by its socket, runs first
//! instead of after every device task that was ready before it.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Handle, Runtime};

static DEVICES: OnceLock<Runtime> = OnceLock::new();

/// How much the device runtime's threads yield to the rest of the server (a nice value): when
/// both cores are busy, the REST API's threads and the database's run first, and device work
/// takes the rest. Alone, device work still gets all the CPU there is.
const DEVICE_NICENESS: i32 = 5;

/// The device runtime (started on first use; one worker thread per core).
pub fn devices() -> Handle {
    DEVICES
        .get_or_init(|| {
            Builder::new_multi_thread()
                .thread_name("devices")
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
                .expect("the device runtime starts")
        })
        .handle()
        .clone()
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid and setpriority on this thread's own id; a failure leaves the priority as
    // it was.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, DEVICE_NICENESS);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// Aborts a task when dropped: work moved to the device runtime ends when the task that
/// started it does.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
