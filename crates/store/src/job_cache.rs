//! Jobs and pages of job devices as last read, answered from memory until any job changes.
//!
//! Dashboards and scripts poll `GET /jobs/{id}` and its device pages while a job runs; each
//! read was a query handed to one of SQLite's connection threads and back, two thread switches
//! that cost more than the query (a `GET /jobs/{id}` was about 180 µs of server CPU). Every
//! write to `jobs` or `job_devices` goes through this crate and calls `changed` once it has
//! committed, which empties the cache and moves the generation on; a read that started before
//! a change does not store what it read. So a reader never sees a job older than the last
//! write that was acknowledged before its read began. One server per database (see
//! docs/api-behaviour.md): another process's writes would not empty this cache.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::Page;
use crate::jobs::{JobDevice, JobRecord};

/// Entries kept at most (of each kind); when full, the cache starts again empty.
const CAPACITY: usize = 512;

/// A page of a job's devices: the job, the position it follows, its size.
type PageKey = (String, i64, usize);

#[derive(Default)]
pub(crate) struct JobCache(Mutex<State>);

#[derive(Default)]
struct State {
    generation: u64,
    jobs: HashMap<String, JobRecord>,
    pages: HashMap<PageKey, Page<JobDevice>>,
}

/// What a cache lookup gives: the entry, or the generation to store a fresh read under.
pub(crate) type Lookup<T> = std::result::Result<T, u64>;

impl JobCache {
    pub(crate) fn job(&self, id: &str) -> Lookup<JobRecord> {
        let state = self.0.lock().unwrap();
        state.jobs.get(id).cloned().ok_or(state.generation)
    }

    pub(crate) fn put_job(&self, generation: u64, job: &JobRecord) {
        let mut state = self.0.lock().unwrap();
        if state.generation == generation {
            if state.jobs.len() >= CAPACITY {
                state.jobs.clear();
            }
            state.jobs.insert(job.id.clone(), job.clone());
        }
    }

    pub(crate) fn page(&self, job_id: &str, after: i64, size: usize) -> Lookup<Page<JobDevice>> {
        let state = self.0.lock().unwrap();
        state
            .pages
            .get(&(job_id.to_string(), after, size))
            .cloned()
            .ok_or(state.generation)
    }

    pub(crate) fn put_page(
        &self,
        generation: u64,
        job_id: &str,
        after: i64,
        size: usize,
        page: &Page<JobDevice>,
    ) {
        let mut state = self.0.lock().unwrap();
        if state.generation == generation {
            if state.pages.len() >= CAPACITY {
                state.pages.clear();
            }
            state
                .pages
                .insert((job_id.to_string(), after, size), page.clone());
        }
    }

    /// A job or a job device changed (called after the write committed).
    pub(crate) fn changed(&self) {
        let mut state = self.0.lock().unwrap();
        state.generation += 1;
        state.jobs.clear();
        state.pages.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, completed: i64) -> JobRecord {
        JobRecord {
            id: id.into(),
            sort_key: id.into(),
            scheduled_job_id: None,
            definition: serde_json::json!({}),
            status: "running".into(),
            reason: None,
            start_ms: None,
            end_ms: None,
            total: 2,
            completed,
            failed: 0,
            batch_size: 2,
            rerun_of: None,
        }
    }

    #[test]
    fn a_read_that_began_before_a_change_is_not_kept() {
        let cache = JobCache::default();
        let generation = cache.job("j").unwrap_err();
        cache.changed();
        cache.put_job(generation, &job("j", 1));
        assert!(cache.job("j").is_err());
    }

    #[test]
    fn a_change_empties_the_cache() {
        let cache = JobCache::default();
        let generation = cache.job("j").unwrap_err();
        cache.put_job(generation, &job("j", 1));
        assert_eq!(cache.job("j").unwrap().completed, 1);
        cache.changed();
        let generation = cache.job("j").unwrap_err();
        cache.put_job(generation, &job("j", 2));
        assert_eq!(cache.job("j").unwrap().completed, 2);
    }
}
