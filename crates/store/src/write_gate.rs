//! One write at a time on SQLite, in arrival order.
//!
//! SQLite has one write lock per database. A connection that finds it taken does not queue: its
//! busy handler sleeps and tries again, with sleeps growing to 100 ms, so while the group-commit
//! writer (`group_commit`) commits back to back, a REST write could lose the race many times over (a
//! `PUT /jobs/{id}` took up to 1.3 s at the 99th percentile while jobs ran). Every write in this
//! process takes its turn here first, a fair queue, and then finds the lock free. PostgreSQL
//! locks rows, not the database: there the gate is open.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::{Dialect, Result, Store, StoreError};

/// The queue writes wait in (`None` inside: PostgreSQL, no waiting). Only this module knows how
/// a write waits, so another policy (a gate shared by processes, say) replaces this type alone.
#[derive(Clone)]
pub(crate) struct WriteGate(Option<Arc<Mutex<()>>>);

impl WriteGate {
    pub(crate) fn for_dialect(dialect: Dialect) -> WriteGate {
        WriteGate((dialect == Dialect::Sqlite).then(|| Arc::new(Mutex::new(()))))
    }

    /// Waits for this write's turn, held until the guard drops.
    async fn turn(&self) -> Option<OwnedMutexGuard<()>> {
        match &self.0 {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        }
    }
}

/// The pool, to run one write statement on while holding the turn.
pub(crate) struct Writing<'a> {
    pool: &'a AnyPool,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl Deref for Writing<'_> {
    type Target = AnyPool;
    fn deref(&self) -> &AnyPool {
        self.pool
    }
}

/// A transaction that writes, holding the turn until it commits or is dropped.
pub(crate) struct WriteTx {
    tx: Transaction<'static, Any>,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

impl Store {
    /// The pool for one write statement, once it is this write's turn:
    /// `.execute(&*self.writing().await)` holds the turn until the statement is done.
    pub(crate) async fn writing(&self) -> Writing<'_> {
        let turn = self.write_gate.turn().await;
        Writing {
            pool: &self.pool,
            _turn: turn,
        }
    }

    /// Begins a transaction that writes, once it is its turn: on SQLite it takes the write lock
    /// at once (`BEGIN IMMEDIATE`), so what it reads stays current until it commits.
    /// Refused (`Fenced`) while this server's lease is not known valid (see `replicas`).
    pub(crate) async fn begin_write(&self) -> Result<WriteTx> {
        let turn = self.write_gate.turn().await;
        self.lease.check()?;
        // The BEGIN runs as a task of its own: a caller cancelled while it is under way (a device
        // task when the engine stops, a request whose client went away) would otherwise leave it
        // running on a pooled connection with nobody to roll back what it began (on SQLite: the
        // write lock, held for good). A transaction whose caller is gone is dropped in the task,
        // which rolls it back.
        let (pool, dialect) = (self.pool.clone(), self.dialect);
        let begun = tokio::spawn(async move {
            match dialect {
                Dialect::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
                Dialect::Postgres => pool.begin().await,
            }
        })
        .await
        .map_err(|_| StoreError::Interrupted)?;
        Ok(WriteTx {
            tx: begun?,
            _turn: turn,
        })
    }
}
