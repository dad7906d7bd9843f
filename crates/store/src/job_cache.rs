//! Jobs and pages of job devices as last read, answered from memory until any job changes.
//!
//! Dashboards and scripts poll `GET /jobs/{id}` and its device pages while a job runs; each
//! read was a query handed to one of SQLite's connection threads and back, two thread switches
//! that cost more than the query (a `GET /jobs/{id}` was about 180 µs of server CPU). Every
//! write to `jobs` or `job_devices` goes through this crate and reports it (`cache::Changed`) once
//! it has committed, which drops every entry. An entry is filled once, by the first reader after a
//! change, and the readers that come meanwhile wait for that read instead of all querying at
//! once (at thousands of requests per second, a job's commits would otherwise send every
//! connection to the database together). So a reader never sees a job older than the last
//! write that was acknowledged before its read began.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::Page;
use crate::jobs::{JobDevice, JobRecord};

/// Entries kept at most (of each kind); when full, the cache starts again empty.
const CAPACITY: usize = 512;

/// A page of a job's devices: the job, the position it follows, its size.
type PageKey = (String, i64, usize);

/// One entry: empty until its first reader has read it.
pub(crate) type Entry<T> = Arc<OnceCell<T>>;

#[derive(Default)]
pub(crate) struct JobCache {
    state: Mutex<State>,
    /// When false, every reader gets an empty entry of its own: it reads the database.
    cached: bool,
}

#[derive(Default)]
struct State {
    jobs: HashMap<String, Entry<Option<JobRecord>>>,
    pages: HashMap<PageKey, Entry<Page<JobDevice>>>,
}

fn entry<K: Hash + Eq, T>(map: &mut HashMap<K, Entry<T>>, key: K) -> Entry<T> {
    if map.len() >= CAPACITY && !map.contains_key(&key) {
        map.clear();
    }
    map.entry(key).or_default().clone()
}

impl JobCache {
    pub(crate) fn new(cached: bool) -> JobCache {
        JobCache {
            state: Mutex::default(),
            cached,
        }
    }

    /// The entry for a job (`None` inside: no such job).
    pub(crate) fn job(&self, id: &str) -> Entry<Option<JobRecord>> {
        if !self.cached {
            return Entry::default();
        }
        entry(&mut self.state.lock().unwrap().jobs, id.to_string())
    }

    /// The entry for a page of a job's devices.
    pub(crate) fn page(&self, job_id: &str, after: i64, size: usize) -> Entry<Page<JobDevice>> {
        if !self.cached {
            return Entry::default();
        }
        entry(
            &mut self.state.lock().unwrap().pages,
            (job_id.to_string(), after, size),
        )
    }

    /// A job or a job device changed (called after the write committed): later readers read
    /// again; readers holding an entry from before keep what was current when they began.
    pub(crate) fn changed(&self) {
        let mut state = self.state.lock().unwrap();
        state.jobs.clear();
        state.pages.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_makes_the_next_reader_read_again() {
        let cache = JobCache::new(true);
        let first = cache.job("j");
        first.get_or_init(async || None).await;
        assert!(Arc::ptr_eq(&first, &cache.job("j")));
        cache.changed();
        let second = cache.job("j");
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(second.get().is_none());
    }

    #[tokio::test]
    async fn readers_at_once_share_one_read() {
        let cache = JobCache::new(true);
        let reads = std::sync::atomic::AtomicUsize::new(0);
        let read = async || {
            let entry = cache.job("j");
            entry
                .get_or_init(async || {
                    reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    None
                })
                .await
                .clone()
        };
        tokio::join!(read(), read(), read());
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn uncached_every_reader_reads() {
        let cache = JobCache::new(false);
        let first = cache.job("j");
        first.get_or_init(async || None).await;
        assert!(cache.job("j").get().is_none());
    }
}
