//! Writers of one entity take turns, in arrival order: a read-modify-write holds its entity's
//! turn from its read to its write. Without turns, concurrent writers of one entity would spoil
//! each other's compare-and-swap and all retry (work growing with the square of their number,
//! and an unlucky writer retrying for long); with them, a write races only writers outside the
//! API (the job engine, say), which are few.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as FairMutex, OwnedMutexGuard};

/// The entities that have a writer now, each with its queue of writers.
#[derive(Clone, Default)]
pub struct EntityTurns {
    queues: Arc<Mutex<HashMap<String, Arc<FairMutex<()>>>>>,
}

/// One writer's turn on one entity, until dropped.
pub struct Turn {
    /// Holds the queue (an `Arc` of it) until after `Drop::drop` has run.
    _guard: OwnedMutexGuard<()>,
    entity: String,
    turns: EntityTurns,
}

impl EntityTurns {
    /// Waits for this writer's turn on `entity` (e.g. `devices/thermostat-1`).
    pub async fn take(&self, entity: String) -> Turn {
        let queue = self
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(entity.clone())
            .or_default()
            .clone();
        Turn {
            _guard: queue.lock_owned().await,
            entity,
            turns: self.clone(),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut queues = self
            .turns
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Two holders, the map and this turn's guard, mean nobody waits: forget the entity.
        // A writer that is about to wait has cloned the queue under this same lock.
        if queues
            .get(&self.entity)
            .is_some_and(|queue| Arc::strong_count(queue) == 2)
        {
            queues.remove(&self.entity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writers_of_one_entity_wait_and_the_entity_is_forgotten_after() {
        let turns = EntityTurns::default();
        let first = turns.take("devices/a".into()).await;
        let other = turns.take("devices/b".into()).await;
        let waiting = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take("devices/a".into()).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap();
        drop((second, other));
        assert!(turns.queues.lock().unwrap().is_empty());
    }
}
