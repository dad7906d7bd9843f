//! The job engine's loop: start pending jobs (fix their devices and batches), and drive running
//! ones batch by batch, a task per device in flight, cancelling a job whose failures reach its
//! threshold. All state is in the database; the memory here only says which devices already
//! have a task. Each running device is owned by the replica working it (`job_devices.owner`);
//! a replica that stops leaves its devices without an owner (the sweep, or its restart, releases
//! them), and every pass claims such orphans, so a restart or another replica picks up every
//! running device where it stopped. Several engines on one database never work one device twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use flotilla_bus::{DeviceBus, ReportedEvent};
use flotilla_model::job::{self, JobSpec, Threshold};
use flotilla_model::job_state::{DeviceOutcome, DeviceStatus, FailureReason, JobEvent, JobStatus};
use flotilla_model::rollout::conflicts::ConflictPolicy;
use flotilla_model::rollout::gate::BatchGate;
use flotilla_model::rollout::offline::Offline;
use flotilla_model::rollout::pacing::Pacing;
use flotilla_model::rollout::reason_code::ReasonCode;
use flotilla_model::rollout::retry::Retry;
use flotilla_model::rollout::windows::MaintenanceWindows;
use flotilla_store::{JobDevice, JobRecord, PreviousValue, Store};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::clock::{Clock, SystemClock};
use crate::config::EngineConfig;
use crate::conflicts::{holders, refusing};
use crate::device_op::{DeviceRun, Outcome, ReportedWatch};
use crate::members::job_members;
use crate::meters::{self, JobType};
use crate::rollout::{self, GateVerdict, Pace};
use crate::templates::Templates;

/// Devices started in one transaction: their work begins while the next ones start.
const START_CHUNK: usize = 500;

/// Handle to the running engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    bus: Arc<dyn DeviceBus>,
    /// Where device work runs: beside the connections it talks to, away from the REST API's.
    devices: Handle,
    config: EngineConfig,
    wake: Notify,
    /// Which devices have a task now.
    in_flight: Mutex<InFlight>,
    /// Per device with a property operation waiting: its reported document as it changes.
    reported: Mutex<HashMap<String, Arc<ReportedWatch>>>,
    /// Jobs whose last pass left pending devices of the current batch unstarted (no room, or
    /// an earlier job holds them): a device of theirs that finishes wakes the engine.
    starved: Mutex<HashSet<String>>,
    /// Each job's parsed definition (a job's definition never changes).
    contexts: Mutex<HashMap<String, Arc<JobContext>>>,
    /// Cancelled by `stop`: the loop ends and device tasks end where they are.
    stopping: CancellationToken,
    /// The loop, the acknowledgement listener and the device tasks, for `stop` to await.
    tasks: TaskTracker,
    /// The time maintenance windows go by (the system's, or a test's file clock).
    clock: Mutex<Arc<dyn Clock>>,
    /// Per paced job, when its next device start is due (ms, fractional): the schedule its
    /// `rollout` keeps on this server.
    pace_due: Mutex<HashMap<String, f64>>,
    /// The earliest timed wake-up asked for (a paced job's next slice, a soak's end, a
    /// window's opening, a deadline), in ms: later ones are asked again by the pass it causes.
    next_wake_ms: Mutex<Option<i64>>,
}

/// The (job, device) pairs that have a task, and how many each job has.
#[derive(Default)]
struct InFlight {
    pairs: HashSet<(String, String)>,
    per_job: HashMap<String, usize>,
}

/// How many devices of a job may start in this pass, and the pace whose schedule they move.
struct Allowed {
    starts: usize,
    pace: Option<Pace>,
}

/// What a job's device tasks share.
struct JobContext {
    id: String,
    operations: Vec<job::Operation>,
    /// What the job does, as the metrics label it.
    job_type: JobType,
    threshold: Option<Threshold>,
    components: Vec<String>,
    /// For a revert: the job whose recorded values each device gets back.
    revert_of: Option<String>,
    retry: Option<Retry>,
    offline: Option<Offline>,
    /// One device's time: the job's `deviceTimeoutSeconds`, or the server's default.
    device_timeout: std::time::Duration,
    /// The rollout controls (all `None` for a job with only IoT Central's fields).
    pacing: Option<Pacing>,
    batch_gate: Option<BatchGate>,
    windows: Option<MaintenanceWindows>,
    /// The job's `deadline` in ms, and as the client wrote it.
    deadline: Option<(i64, String)>,
}

impl Engine {
    /// Starts the engine's loop and its listener for device acknowledgements, on the `devices`
    /// runtime.
    pub fn start(
        store: Store,
        bus: Arc<dyn DeviceBus>,
        devices: Handle,
        config: EngineConfig,
    ) -> Engine {
        let engine = Engine {
            inner: Arc::new(Inner {
                store,
                bus,
                devices,
                config,
                wake: Notify::new(),
                in_flight: Mutex::new(InFlight::default()),
                reported: Mutex::new(HashMap::new()),
                starved: Mutex::new(HashSet::new()),
                contexts: Mutex::new(HashMap::new()),
                stopping: CancellationToken::new(),
                tasks: TaskTracker::new(),
                clock: Mutex::new(Arc::new(SystemClock)),
                next_wake_ms: Mutex::new(None),
                pace_due: Mutex::new(HashMap::new()),
            }),
        };
        let devices = &engine.inner.devices;
        let stopping = &engine.inner.stopping;
        engine.inner.tasks.spawn_on(
            stopping
                .clone()
                .run_until_cancelled_owned(engine.clone().listen_for_reports()),
            devices,
        );
        engine.inner.tasks.spawn_on(
            stopping
                .clone()
                .run_until_cancelled_owned(engine.clone().run()),
            devices,
        );
        engine
    }

    /// Stops the engine and returns when its tasks have ended: no device starts after this,
    /// and a device in flight stops where it is. Its row stays `running`, owned by this replica,
    /// as after a crash; the next engine or replica takes it over once it is released (every
    /// step a device takes is durable on its own).
    pub async fn stop(&self) {
        self.inner.stopping.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Asks the engine to look at the jobs now (a job was created, stopped or resumed).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The clock maintenance windows go by (the system clock until this is called).
    pub fn use_clock(&self, clock: Arc<dyn Clock>) {
        *self.inner.clock.lock().unwrap() = clock;
    }

    /// Wakes the engine at `at_ms` (now if past), unless an earlier wake-up is already due.
    fn wake_at(&self, at_ms: i64) {
        let now = now_ms();
        if at_ms <= now {
            self.wake();
            return;
        }
        {
            let mut next = self.inner.next_wake_ms.lock().unwrap();
            if next.is_some_and(|t| t > now && t <= at_ms) {
                return;
            }
            *next = Some(at_ms);
        }
        let engine = self.clone();
        let delay = std::time::Duration::from_millis((at_ms - now) as u64);
        let stopping = self.inner.stopping.clone();
        self.inner.tasks.spawn_on(
            stopping.run_until_cancelled_owned(async move {
                tokio::time::sleep(delay).await;
                let mut next = engine.inner.next_wake_ms.lock().unwrap();
                if *next == Some(at_ms) {
                    *next = None;
                }
                drop(next);
                engine.wake();
            }),
            &self.inner.devices,
        );
    }

    /// A device's deadline if it starts now: its time, and never past the job's deadline.
    fn device_deadline(&self, context: &JobContext) -> i64 {
        let deadline = now_ms() + context.device_timeout.as_millis() as i64;
        match &context.deadline {
            Some((job_deadline, _)) => deadline.min(*job_deadline),
            None => deadline,
        }
    }

    async fn run(self) {
        // Devices an earlier engine on this store left running have no task here: released,
        // the passes claim them again (a command it sent fails, never sent twice).
        while let Err(e) = self.inner.store.release_own_job_devices().await {
            tracing::error!(error = %e, "releasing this replica's job devices failed; retrying");
            if matches!(e, flotilla_store::StoreError::Fenced) {
                return;
            }
            tokio::time::sleep(self.inner.config.tick).await;
        }
        loop {
            let notified = self.inner.wake.notified();
            if let Err(e) = self.pass().await {
                tracing::error!(error = %e, "job engine pass failed");
            }
            let _ = tokio::time::timeout(self.inner.config.tick, notified).await;
        }
    }

    async fn listen_for_reports(self) {
        let mut changes = self.inner.bus.reported_changes();
        while let Some(event) = changes.next().await {
            match event {
                ReportedEvent::Changed(change) => {
                    let watch = self
                        .inner
                        .reported
                        .lock()
                        .unwrap()
                        .get(&change.device_id)
                        .cloned();
                    if let Some(watch) = watch {
                        watch.changed(change.version, change.reported);
                    }
                }
                ReportedEvent::Missed => {
                    // Changes were missed: every waiting operation reads its twin again.
                    for watch in self.inner.reported.lock().unwrap().values() {
                        watch.missed();
                    }
                }
            }
        }
    }

    async fn pass(&self) -> flotilla_store::Result<()> {
        let store = &self.inner.store;
        if store.is_fenced() {
            return Ok(());
        }
        // Jobs with running devices no replica owns (read once: claiming is a write).
        let mut orphaned: HashSet<String> = store
            .jobs_with_orphaned_devices()
            .await?
            .into_iter()
            .collect();
        let jobs = store.jobs_with_status(JobStatus::ACTIVE).await?;
        for record in jobs {
            let orphans = orphaned.remove(&record.id);
            // The job's span: what its work logs carries its id.
            let span = tracing::info_span!("job", job = %record.id);
            let result = match record.status {
                JobStatus::Pending => self.start_job(&record).instrument(span).await,
                _ => self.drive(&record, orphans).instrument(span).await,
            };
            if let Err(e) = result {
                tracing::error!(job = %record.id, error = %e, "driving a job failed");
            }
        }
        // Devices in flight of stopped or cancelled jobs that a stopped replica left finish too.
        for id in orphaned {
            let Some(record) = store.job(&id).await? else {
                continue;
            };
            if let Err(e) = self.drive(&record, true).await {
                tracing::error!(job = %record.id, error = %e, "taking over a job's devices failed");
            }
        }
        Ok(())
    }

    async fn context(
        &self,
        record: &JobRecord,
    ) -> flotilla_store::Result<Result<JobContext, String>> {
        let templates = Templates::load(&self.inner.store).await?;
        let spec = match JobSpec::from_json(&record.definition, &templates) {
            Ok(spec) => spec,
            Err(invalid) => return Ok(Err(invalid.message)),
        };
        let components = spec
            .target()
            .and_then(|t| flotilla_model::job::TemplateLookup::capabilities(&templates, t))
            .map(|caps| {
                let mut names: Vec<String> = caps.into_iter().filter_map(|c| c.component).collect();
                names.dedup();
                names
            })
            .unwrap_or_default();
        let operations: Vec<job::Operation> = spec.operations().cloned().collect();
        Ok(Ok(JobContext {
            id: record.id.clone(),
            job_type: JobType::of(&operations),
            operations,
            threshold: spec.threshold,
            components,
            revert_of: spec.revert_of.clone(),
            retry: spec.retry,
            offline: spec.offline,
            device_timeout: spec.device_timeout_seconds.map_or(
                self.inner.config.device_timeout,
                std::time::Duration::from_secs,
            ),
            pacing: spec.pacing,
            batch_gate: spec.batch_gate,
            windows: spec.windows,
            deadline: spec.deadline.map(|d| (d.at.as_millisecond(), d.text)),
        }))
    }

    /// Fixes a pending job's devices (the group's devices of the target template, by id; for a
    /// rerun, the original's failed devices) and batches, and marks it running.
    async fn start_job(&self, record: &JobRecord) -> flotilla_store::Result<()> {
        let store = &self.inner.store;
        let templates = Templates::load(store).await?;
        let fail = |reason: String| async move {
            tracing::warn!(job = %record.id, %reason, "job failed to start");
            store
                .transition(&record.id, &JobEvent::Fail(reason))
                .await
                .map(|_| ())
        };
        let spec = match JobSpec::from_json(&record.definition, &templates) {
            Ok(spec) => spec,
            Err(invalid) => return fail(invalid.message).await,
        };
        let devices =
            match job_members(store, &templates, &spec, record.rerun_of.as_deref()).await? {
                Ok(devices) => devices,
                Err(reason) => return fail(reason).await,
            };
        // A `refuse` job that an earlier job conflicts with (a scheduled job's run, or one
        // created at the same moment as the other) fails instead of starting.
        if spec.conflicts == Some(ConflictPolicy::Refuse) {
            let holders =
                holders(store, &templates, &spec, &devices, Some(&record.sort_key)).await?;
            if let Some(holder) = refusing(&holders) {
                return fail(format!(
                    "refused (\"conflicts\": \"refuse\"): it conflicts with {}",
                    holder.describe()
                ))
                .await;
            }
        }
        let total = devices.len() as u64;
        let batch_size = spec.batch.map(|b| b.size(total)).unwrap_or(total).max(1);
        // The first batch's devices (as many as may be in flight) start with the job, in its
        // transaction, unless an earlier job is active (it may hold some of them: the order
        // rule is then checked device by device, as the next pass starts them). With several
        // servers on the database, not those connected to another live server: each device is
        // worked by the server holding its connection, which claims it on its next pass
        // (locality, see `Store::start_job_devices`).
        let first_batch = (batch_size as usize).min(devices.len());
        // A job with rollout controls starts its devices as they allow, in the passes.
        let eager: Vec<usize> = if total > 0
            && !spec.paced()
            && !store.earlier_active_job_exists(&record.sort_key).await?
        {
            let elsewhere = store
                .devices_held_elsewhere(&devices[..first_batch])
                .await?;
            (0..first_batch)
                .filter(|&position| !elsewhere.contains(&devices[position]))
                .take(self.inner.config.max_in_flight_per_job)
                .collect()
        } else {
            Vec::new()
        };
        let deadline = jiff::Timestamp::now().as_millisecond()
            + self.inner.config.device_timeout.as_millis() as i64;
        if store
            .start_job(&record.id, &devices, batch_size as i64, &eager, deadline)
            .await?
        {
            tracing::info!(job = %record.id, devices = total, batch_size, "job started");
            if !eager.is_empty() {
                if eager.len() < first_batch {
                    self.inner.starved.lock().unwrap().insert(record.id.clone());
                }
                if let Some(context) = self.job_context(record).await? {
                    for position in eager {
                        let device = JobDevice {
                            device_id: devices[position].clone(),
                            position: position as i64,
                            batch: position as i64 / batch_size as i64,
                            status: DeviceStatus::Running,
                            reason: None,
                            reason_code: None,
                            detail: None,
                            deadline_ms: Some(deadline),
                            desired_version: None,
                            sent: false,
                            attempts: 1,
                            started_ms: None,
                            finished_ms: None,
                        };
                        self.spawn_device(context.clone(), device);
                    }
                }
            }
        }
        self.wake();
        Ok(())
    }

    /// A job's parsed definition, cached; `None` (and the job failed) when it no longer parses.
    async fn job_context(
        &self,
        record: &JobRecord,
    ) -> flotilla_store::Result<Option<Arc<JobContext>>> {
        if let Some(context) = self.inner.contexts.lock().unwrap().get(&record.id).cloned() {
            return Ok(Some(context));
        }
        match self.context(record).await? {
            Ok(context) => {
                let context = Arc::new(context);
                self.inner
                    .contexts
                    .lock()
                    .unwrap()
                    .insert(record.id.clone(), context.clone());
                Ok(Some(context))
            }
            Err(reason) => {
                self.inner
                    .store
                    .transition(&record.id, &JobEvent::Fail(reason))
                    .await?;
                Ok(None)
            }
        }
    }

    /// Takes over the job's running devices no replica owns (when it has `orphans`), starts the
    /// next devices of a running job's current batch, and completes the job when every device
    /// has finished.
    async fn drive(&self, record: &JobRecord, orphans: bool) -> flotilla_store::Result<()> {
        let store = &self.inner.store;
        let Some(context) = self.job_context(record).await? else {
            return Ok(());
        };
        let room = |engine: &Engine| {
            engine
                .inner
                .config
                .max_in_flight_per_job
                .saturating_sub(engine.in_flight_of(&record.id))
        };
        // Orphans first: they are earlier in the job than any pending device.
        if orphans && room(self) > 0 {
            for device in store
                .claim_orphaned_job_devices(&record.id, room(self))
                .await?
            {
                self.spawn_device(context.clone(), device);
            }
        }
        if record.status != JobStatus::Running {
            return Ok(());
        }
        if let Some((deadline, text)) = &context.deadline {
            if now_ms() >= *deadline {
                let unfinished =
                    (record.total - record.completed - record.failed - record.skipped).max(0);
                let reason = format!(
                    "the job's deadline ({text}) passed before {unfinished} of its devices finished"
                );
                if store
                    .transition(&record.id, &JobEvent::DeadlinePassed(reason))
                    .await?
                {
                    tracing::info!(job = %record.id, unfinished, "job ended at its deadline");
                    self.forget_job(&record.id);
                }
                return Ok(());
            }
            self.wake_at(*deadline);
        }
        let room = room(self);
        if room == 0 {
            return Ok(());
        }
        match store.current_batch(&record.id, room).await? {
            None => {
                if record
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(rollout::WAITING))
                {
                    store.note_job_waiting(&record.id, None).await?;
                }
                if store.transition(&record.id, &JobEvent::Complete).await? {
                    tracing::info!(job = %record.id, completed = record.completed, failed = record.failed, "job complete");
                    self.forget_job(&record.id);
                }
            }
            Some((batch, pending)) => {
                // With no device to start (the batch's last ones run), the rollout controls
                // have nothing to decide or to say.
                let allowed = if pending.is_empty() {
                    Allowed {
                        starts: usize::MAX,
                        pace: None,
                    }
                } else {
                    match self.rollout_allowance(record, &context, batch).await? {
                        Some(allowed) => allowed,
                        None => return Ok(()),
                    }
                };
                // The pace's limit is not starvation: its own timer wakes the engine.
                let limit = room.min(allowed.starts);
                // Only when an older job is still active can it hold one of our devices.
                let check_order = store.earlier_active_job_exists(&record.sort_key).await?;
                let mut chosen = Vec::new();
                let mut held_back = false;
                for device in pending {
                    if chosen.len() >= limit {
                        held_back = limit == room;
                        break;
                    }
                    let key = (record.id.clone(), device.device_id.clone());
                    if self.inner.in_flight.lock().unwrap().pairs.contains(&key) {
                        continue;
                    }
                    if check_order
                        && store
                            .earlier_job_holds_device(&record.sort_key, &device.device_id)
                            .await?
                    {
                        held_back = true;
                        continue;
                    }
                    chosen.push(device);
                }
                // A full page may not be all the batch has left.
                held_back |= chosen.len() >= room;
                {
                    let mut starved = self.inner.starved.lock().unwrap();
                    if held_back {
                        starved.insert(record.id.clone());
                    } else {
                        starved.remove(&record.id);
                    }
                }
                if chosen.is_empty() {
                    return Ok(());
                }
                // Started a chunk at a time: one transaction marks a chunk running, with one
                // deadline, and its devices set to work while the next chunk starts (a pass
                // may start tens of thousands).
                let mut chosen = chosen.into_iter().peekable();
                let mut started_count = 0;
                while chosen.peek().is_some() {
                    let chunk: Vec<JobDevice> = chosen.by_ref().take(START_CHUNK).collect();
                    let deadline = self.device_deadline(&context);
                    let ids: Vec<&str> = chunk.iter().map(|d| d.device_id.as_str()).collect();
                    let started: HashSet<String> = store
                        .start_job_devices(&record.id, &ids, deadline)
                        .await?
                        .into_iter()
                        .collect();
                    started_count += started.len();
                    for mut device in chunk {
                        if started.contains(&device.device_id) {
                            device.status = DeviceStatus::Running;
                            device.deadline_ms = Some(deadline);
                            device.attempts += 1;
                            self.spawn_device(context.clone(), device);
                        }
                    }
                }
                if let Some(pace) = allowed.pace {
                    // The schedule moves on by the devices that did start.
                    let mut schedule = self.inner.pace_due.lock().unwrap();
                    let due =
                        pace.due_after(schedule.get(&record.id).copied(), started_count, now_ms());
                    schedule.insert(record.id.clone(), due);
                    drop(schedule);
                    self.wake_at(pace.next_pass_ms(due));
                }
            }
        }
        Ok(())
    }

    /// How many devices of the job's current `batch` its rollout controls let start now
    /// (`usize::MAX` without any); `None` when none may, after acting on why: a batch gate
    /// not met stops the job, a job outside its windows says so, and a timed wake-up is asked
    /// for when the answer will change.
    async fn rollout_allowance(
        &self,
        record: &JobRecord,
        context: &JobContext,
        batch: i64,
    ) -> flotilla_store::Result<Option<Allowed>> {
        let store = &self.inner.store;
        if let Some(windows) = &context.windows {
            let clock = self.inner.clock.lock().unwrap().clone();
            let now = clock.now();
            match rollout::window_wait(windows.state(now)) {
                Some((note, opens)) => {
                    store.note_job_waiting(&record.id, Some(&note)).await?;
                    if let Some(opens) = opens {
                        let wait = opens.as_millisecond() - now.as_millisecond();
                        self.wake_at(now_ms() + wait);
                    }
                    return Ok(None);
                }
                None if record
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with(rollout::WAITING)) =>
                {
                    store.note_job_waiting(&record.id, None).await?;
                }
                None => {}
            }
        }
        if let Some(gate) = &context.batch_gate
            && batch > 0
            && !store.batch_has_started(&record.id, batch).await?
        {
            let previous = store.batch_outcome(&record.id, batch - 1).await?;
            match rollout::gate(gate, batch, &previous, now_ms()) {
                GateVerdict::Open => {}
                GateVerdict::Soaking { until_ms } => {
                    self.wake_at(until_ms);
                    return Ok(None);
                }
                // A user who resumed the job after this gate stopped it lets the batch go.
                GateVerdict::NotMet { .. }
                    if store.gate_held_batch(&record.id).await? == Some(batch) => {}
                GateVerdict::NotMet { reason } => {
                    if store.hold_at_gate(&record.id, batch, &reason).await? {
                        tracing::info!(job = %record.id, batch, %reason, "job stopped at a batch gate");
                    }
                    return Ok(None);
                }
            }
        }
        let Some(pacing) = &context.pacing else {
            return Ok(Some(Allowed {
                starts: usize::MAX,
                pace: None,
            }));
        };
        let pace = Pace::of(pacing, record.completed.max(0) as u64);
        let now = now_ms();
        let recent = store
            .recent_job_starts(&record.id, pace.minute_since(now))
            .await?;
        let due = self.inner.pace_due.lock().unwrap().get(&record.id).copied();
        let allowance = pace.allowance(due, &recent, now);
        if allowance.starts == 0 {
            self.wake_at(allowance.look_again_ms);
            return Ok(None);
        }
        Ok(Some(Allowed {
            starts: allowance.starts,
            pace: Some(pace),
        }))
    }

    /// Drops what the engine keeps in memory for a job that ended here: its parsed definition,
    /// its starvation mark and its pace schedule.
    fn forget_job(&self, job_id: &str) {
        self.inner.contexts.lock().unwrap().remove(job_id);
        self.inner.starved.lock().unwrap().remove(job_id);
        self.inner.pace_due.lock().unwrap().remove(job_id);
    }

    fn in_flight_of(&self, job_id: &str) -> usize {
        let in_flight = self.inner.in_flight.lock().unwrap();
        in_flight.per_job.get(job_id).copied().unwrap_or(0)
    }

    fn spawn_device(&self, context: Arc<JobContext>, device: JobDevice) {
        if self.inner.stopping.is_cancelled() {
            return;
        }
        let key = (context.id.clone(), device.device_id.clone());
        {
            let mut in_flight = self.inner.in_flight.lock().unwrap();
            if !in_flight.pairs.insert(key.clone()) {
                return;
            }
            *in_flight.per_job.entry(context.id.clone()).or_default() += 1;
        }
        let engine = self.clone();
        // At debug level: at info, making it cost about 5 µs of CPU per device (4% of a command
        // job's server CPU in bench/bench.py), and the lines a device's failure logs name the
        // job and the device anyway. `FLOTILLA_LOG=info,flotilla_jobs=debug` turns it on.
        let span =
            tracing::debug_span!("device_operation", job = %context.id, device = %device.device_id);
        let device_task = async move {
            let stopping = engine.inner.stopping.clone();
            let Some(run) = stopping
                .run_until_cancelled(engine.run_device(&context, device))
                .await
            else {
                return;
            };
            if let Err(e) = run {
                tracing::error!(job = %context.id, error = %e, "a device's operation failed to record");
            }
            let left = {
                let mut in_flight = engine.inner.in_flight.lock().unwrap();
                in_flight.pairs.remove(&key);
                let count = in_flight.per_job.entry(key.0.clone()).or_default();
                *count = count.saturating_sub(1);
                let left = *count;
                if left == 0 {
                    in_flight.per_job.remove(&key.0);
                }
                left
            };
            // A pass is needed when the job's batch (or the job) may be done, when devices of
            // the job wait for room, or when another job may wait for this device (the order
            // rule); otherwise thousands of finishing devices would each cause one.
            let wanted = left == 0
                || engine.inner.starved.lock().unwrap().contains(&key.0)
                || engine.inner.contexts.lock().unwrap().len() > 1;
            if wanted {
                engine.wake();
            }
        };
        self.inner
            .tasks
            .spawn_on(device_task.instrument(span), &self.inner.devices);
    }

    async fn run_device(
        &self,
        context: &JobContext,
        mut device: JobDevice,
    ) -> flotilla_store::Result<()> {
        let store = &self.inner.store;
        let started = std::time::Instant::now();
        let deadline_ms = match device.deadline_ms {
            Some(deadline) if device.status == DeviceStatus::Running => deadline,
            _ => {
                let deadline = self.device_deadline(context);
                if !store
                    .start_job_device(&context.id, &device.device_id, deadline)
                    .await?
                {
                    return Ok(());
                }
                device.status = DeviceStatus::Running;
                device.attempts += 1;
                deadline
            }
        };
        let watch = self
            .inner
            .reported
            .lock()
            .unwrap()
            .entry(device.device_id.clone())
            .or_insert_with(|| Arc::new(ReportedWatch::default()))
            .clone();
        let run = DeviceRun {
            store,
            bus: self.inner.bus.as_ref(),
            config: &self.inner.config,
            job_id: &context.id,
            device: &device,
            deadline_ms,
            timeout: context.device_timeout,
            job_deadline_ms: context.deadline.as_ref().map(|(at, _)| *at),
            reported: watch.clone(),
            components: context.components.clone(),
            offline: context.offline.as_ref(),
        };
        let outcome = match &context.revert_of {
            Some(original) => match store.previous_values(original, &device.device_id).await {
                Ok(previous) => {
                    run.run(&restoring_operations(&context.operations, &previous))
                        .await
                }
                Err(e) => Outcome::Failed {
                    code: FailureReason::StorageError,
                    reason: format!("reading the values to restore failed: {e}"),
                    detail: None,
                },
            },
            None => run.run(&context.operations).await,
        };
        drop(run);
        {
            let mut reported = self.inner.reported.lock().unwrap();
            if Arc::strong_count(&watch) <= 2 {
                reported.remove(&device.device_id);
            }
        }
        self.finish_device(context, &device, outcome, started).await
    }

    /// Sends a failed device back for another try when the job's retry policy says so (a
    /// listed cause, tries left, and no command sent); whether it did.
    async fn retried(
        &self,
        context: &JobContext,
        device: &JobDevice,
        outcome: &Outcome,
    ) -> flotilla_store::Result<bool> {
        let (
            Some(retry),
            Outcome::Failed {
                code,
                reason,
                detail,
            },
        ) = (&context.retry, outcome)
        else {
            return Ok(false);
        };
        if !retry.retries(ReasonCode::of_failure(*code), device.attempts) {
            return Ok(false);
        }
        let backoff = retry.backoff(device.attempts);
        let retry_at = jiff::Timestamp::now().as_millisecond() + backoff.as_millis() as i64;
        let sent_back = match self
            .inner
            .store
            .retry_job_device(
                &context.id,
                &device.device_id,
                *code,
                reason,
                detail.as_ref(),
                retry_at,
            )
            .await
        {
            Ok(sent_back) => sent_back,
            Err(e @ flotilla_store::StoreError::Fenced) => return Err(e),
            // Its failure is recorded instead (finishing retries through database trouble).
            Err(e) => {
                tracing::warn!(job = %context.id, device = %device.device_id, error = %e, "sending a device back for a retry failed; it fails");
                false
            }
        };
        if sent_back {
            tracing::info!(job = %context.id, device = %device.device_id, attempts = device.attempts, backoff_ms = backoff.as_millis() as u64, %reason, "device failed; it will be tried again");
        }
        Ok(sent_back)
    }

    /// Records a device's outcome, unless the task gave the device up.
    async fn finish_device(
        &self,
        context: &JobContext,
        device: &JobDevice,
        outcome: Outcome,
        started: std::time::Instant,
    ) -> flotilla_store::Result<()> {
        let store = &self.inner.store;
        if self.retried(context, device, &outcome).await? {
            return Ok(());
        }
        let (result, reason, detail) = match &outcome {
            Outcome::Completed { detail } => (DeviceOutcome::Completed, None, detail.as_ref()),
            Outcome::Skipped { reason } => (DeviceOutcome::Skipped, Some(reason.as_str()), None),
            Outcome::Failed {
                code,
                reason,
                detail,
            } => (
                DeviceOutcome::Failed(*code),
                Some(reason.as_str()),
                detail.as_ref(),
            ),
            Outcome::Abandoned => {
                tracing::info!(job = %context.id, device = %device.device_id, "the device is no longer this server's to work; its task stops");
                return Ok(());
            }
        };
        // The outcome must be recorded, or the device would stay running and hold its batch:
        // retry through passing database trouble.
        let mut backoff = std::time::Duration::from_millis(100);
        let finish = loop {
            let attempt = store
                .finish_job_device(
                    &context.id,
                    &device.device_id,
                    result,
                    reason,
                    detail,
                    context.threshold.map(|t| (t, device.batch)),
                )
                .await;
            match attempt {
                Ok(finish) => break finish,
                // A fenced replica records nothing more; the device is released to another.
                Err(e @ flotilla_store::StoreError::Fenced) => return Err(e),
                Err(e) => {
                    tracing::warn!(job = %context.id, device = %device.device_id, error = %e, "recording a device's outcome failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
                }
            }
        };
        if finish.counted {
            let failure = match result {
                DeviceOutcome::Failed(reason) => Some(reason),
                DeviceOutcome::Completed | DeviceOutcome::Skipped => None,
            };
            meters::device_finished(context.job_type, failure, started.elapsed());
        }
        if finish.counted && matches!(result, DeviceOutcome::Failed(_)) {
            tracing::info!(job = %context.id, device = %device.device_id, reason, "device failed");
        }
        if let Some(reason) = finish.cancelled {
            tracing::info!(job = %context.id, %reason, "job cancelled");
        }
        Ok(())
    }
}

/// A revert's operations on one device: each of the job's capabilities that the original
/// changed there, with the value it had before (the others are left alone).
fn restoring_operations(
    operations: &[job::Operation],
    previous: &[PreviousValue],
) -> Vec<job::Operation> {
    operations
        .iter()
        .filter_map(|op| {
            let c = op.capability()?;
            let before = previous
                .iter()
                .find(|p| p.kind == op.kind() && p.component == c.component && p.name == c.name)?;
            let mut restored = c.clone();
            restored.value = Some(before.value.clone());
            restored.effective_value = Some(before.value.clone());
            Some(match op {
                job::Operation::Property(_) => job::Operation::Property(restored),
                job::Operation::CloudProperty(_) => job::Operation::CloudProperty(restored),
                _ => return None,
            })
        })
        .collect()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
