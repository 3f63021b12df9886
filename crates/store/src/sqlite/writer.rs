//! The one writer: a thread that owns SQLite's write connection and runs whole units of
//! work, committing several at a time.
//!
//! A request hands the writer one closure (a judged batch, a login record, an import) and
//! waits for its answer; all statements of that unit run on the writer's thread, so no
//! statement crosses threads. While one transaction is being made durable (the fsync of
//! `COMMIT` under `synchronous=FULL`), new units queue up; the writer then takes them all
//! (up to [`MAX_GROUP`] units and [`MAX_WEIGHT`] items) into the next transaction, each
//! inside its own savepoint, and commits them with one fsync. A unit that fails is rolled
//! back to its savepoint and answered alone; the others commit. Nobody is answered before
//! the commit holding their unit returned.
//!
//! Faults: after any failed `BEGIN`, statement or `COMMIT` the writer makes sure its
//! connection is outside a transaction again (rolling back, or reopening the connection),
//! so the next unit works as soon as the cause (a full disk, say) is gone. Whether the
//! last commit failed is kept in [`Health`] for the readiness check.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use chargegate_core::store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::error::from_sqlite;

/// Most units one transaction carries.
pub(crate) const MAX_GROUP: usize = 64;
/// Most items (charges of a batch, rows of an import) one transaction carries, unless a
/// single unit is larger on its own; keeps a group's latency bounded.
pub(crate) const MAX_WEIGHT: usize = 2_000;

/// Commits between two nudges of the checkpointer.
const CHECKPOINT_EVERY: u64 = 32;

/// Whether the writer can commit: false from a failed commit until the next success.
#[derive(Debug)]
pub(crate) struct Health(AtomicBool);

impl Health {
    fn set(&self, writable: bool) {
        self.0.store(writable, Ordering::SeqCst);
    }

    pub(crate) fn writable(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A unit of work as the writer thread sees it, whatever its answer's type.
trait Unit: Send {
    fn weight(&self) -> usize;
    /// Runs the work inside the open transaction; `false` when it failed (its savepoint
    /// must then be rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller with the unit's own outcome: its value once committed, or its
    /// own error.
    fn answer(self: Box<Self>);
    /// Answers the caller with an error that is not the unit's own (the transaction
    /// holding it could not commit).
    fn fail(self: Box<Self>, error: StoreError);
}

struct Pending<T, F> {
    work: Option<F>,
    outcome: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
    weight: usize,
}

impl<T, F> Unit for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn weight(&self) -> usize {
        self.weight
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(work) = self.work.take() else {
            return false;
        };
        // A panic is a bug in one unit; it must not take the writer (and every later
        // write) down with it.
        let outcome = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            Err(StoreError::Internal(
                "a database write panicked; it was rolled back".into(),
            ))
        });
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>) {
        let outcome = self
            .outcome
            .unwrap_or_else(|| Err(StoreError::Internal("a write was never run".into())));
        let _ = self.reply.send(outcome);
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let outcome = match self.outcome {
            // A unit that failed on its own keeps its own, more precise, answer.
            Some(Err(own)) => Err(own),
            _ => Err(error),
        };
        let _ = self.reply.send(outcome);
    }
}

enum Message {
    Unit(Box<dyn Unit>),
    /// Finish what is queued, fold the write-ahead log into the database, stop.
    Close(oneshot::Sender<()>),
}

/// Opens (or reopens) the write connection.
pub(crate) type Opener = Arc<dyn Fn() -> rusqlite::Result<Connection> + Send + Sync>;

/// The handle requests use to reach the writer thread.
pub(crate) struct Writer {
    sender: std::sync::Mutex<Option<mpsc::Sender<Message>>>,
    pub(crate) health: Arc<Health>,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the database writer has stopped".into())
}

impl Writer {
    /// Starts the writer thread over an open connection.
    pub(crate) fn start(conn: Connection, reopen: Opener) -> std::io::Result<Writer> {
        let (sender, receiver) = mpsc::channel();
        let health = Arc::new(Health(AtomicBool::new(true)));
        let thread_health = health.clone();
        let (checkpoint, nudges) = mpsc::sync_channel(1);
        let checkpointer_connection = reopen.clone();
        std::thread::Builder::new()
            .name("chargegate-sqlite-checkpointer".into())
            .spawn(move || checkpointer(checkpointer_connection, nudges))?;
        std::thread::Builder::new()
            .name("chargegate-sqlite-writer".into())
            .spawn(move || {
                Thread {
                    conn,
                    reopen,
                    receiver,
                    health: thread_health,
                    queue: VecDeque::new(),
                    checkpoint,
                    commits: 0,
                }
                .run();
            })?;
        Ok(Writer {
            sender: std::sync::Mutex::new(Some(sender)),
            health,
        })
    }

    /// Runs `work` in the writer's next transaction and answers once that transaction
    /// committed (or failed). `weight` is how many items the work touches.
    pub(crate) async fn write<T, F>(&self, weight: usize, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let unit = Box::new(Pending {
            work: Some(work),
            outcome: None,
            reply,
            weight,
        });
        self.send(Message::Unit(unit))?;
        answer.await.map_err(|_| stopped())?
    }

    fn send(&self, message: Message) -> StoreResult<()> {
        let sender = self
            .sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match sender.as_ref() {
            Some(sender) => sender.send(message).map_err(|_| stopped()),
            None => Err(stopped()),
        }
    }

    /// Lets queued work finish, checkpoints, and stops the thread. Later writes answer
    /// `Unavailable`.
    pub(crate) async fn close(&self) {
        let (done, finished) = oneshot::channel();
        if self.send(Message::Close(done)).is_ok() {
            let _ = finished.await;
        }
        self.sender
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

struct Thread {
    conn: Connection,
    reopen: Opener,
    receiver: mpsc::Receiver<Message>,
    health: Arc<Health>,
    /// Units received but not yet run.
    queue: VecDeque<Box<dyn Unit>>,
    /// Nudges the checkpointer.
    checkpoint: mpsc::SyncSender<()>,
    commits: u64,
}

/// Copies the write-ahead log back into the database file beside the writer, so the
/// writer never stalls on a checkpoint inside a commit (SQLite's own automatic checkpoint
/// only remains as a far-off safety net). A passive checkpoint neither waits for nor
/// blocks the writer or the readers. Stops when the writer does.
fn checkpointer(open: Opener, nudges: mpsc::Receiver<()>) {
    let mut conn = None;
    while nudges.recv().is_ok() {
        if conn.is_none() {
            conn = open().ok();
        }
        let Some(c) = conn.as_ref() else { continue };
        if let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "background checkpoint failed; will try again");
            conn = None;
        }
    }
}

impl Thread {
    fn run(mut self) {
        // Should this thread ever end by a panic, readiness must not go on saying the
        // database can be written.
        struct Stopped(Arc<Health>);
        impl Drop for Stopped {
            fn drop(&mut self) {
                self.0.set(false);
            }
        }
        let _stopped = Stopped(self.health.clone());
        let mut closing = None;
        loop {
            if self.queue.is_empty() {
                match self.receiver.recv() {
                    Ok(Message::Unit(unit)) => self.queue.push_back(unit),
                    Ok(Message::Close(done)) => {
                        closing = Some(done);
                        break;
                    }
                    // Every handle is gone: nobody can send more work.
                    Err(_) => break,
                }
            }
            // Whatever arrived while the last transaction was committing joins this one.
            while closing.is_none() && self.queue.len() < MAX_GROUP {
                match self.receiver.try_recv() {
                    Ok(Message::Unit(unit)) => self.queue.push_back(unit),
                    Ok(Message::Close(done)) => closing = Some(done),
                    Err(_) => break,
                }
            }
            let group = self.take_group();
            self.commit_group(group);
            if closing.is_some() {
                break;
            }
        }
        while !self.queue.is_empty() {
            let group = self.take_group();
            self.commit_group(group);
        }
        // Fold the log into the database file, so the .db file alone holds everything.
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        drop(self.conn);
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }

    /// The next units to commit together: at least one, then as many as fit the bounds.
    fn take_group(&mut self) -> Vec<Box<dyn Unit>> {
        let mut group = Vec::new();
        let mut weight: usize = 0;
        while let Some(next) = self.queue.front() {
            let fits = group.is_empty()
                || (group.len() < MAX_GROUP && weight.saturating_add(next.weight()) <= MAX_WEIGHT);
            if !fits {
                break;
            }
            weight = weight.saturating_add(next.weight());
            if let Some(unit) = self.queue.pop_front() {
                group.push(unit);
            }
        }
        group
    }

    fn execute(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.prepare_cached(sql)?.execute([]).map(|_| ())
    }

    fn commit_group(&mut self, group: Vec<Box<dyn Unit>>) {
        if let Err(e) = self.execute("BEGIN IMMEDIATE") {
            let error = from_sqlite(e);
            self.recover(&error);
            for unit in group {
                unit.fail(error.clone());
            }
            return;
        }
        let mut committed: Vec<Box<dyn Unit>> = Vec::with_capacity(group.len());
        let mut units = group.into_iter();
        while let Some(mut unit) = units.next() {
            if committed.is_empty() {
                // The first unit needs no savepoint: should it fail, rolling back the
                // whole transaction undoes exactly it. (Alone in its group, the usual
                // case without contention, a unit then costs no savepoint at all.)
                if unit.run(&self.conn) {
                    committed.push(unit);
                    continue;
                }
                if !self.conn.is_autocommit() && self.execute("ROLLBACK").is_err() {
                    self.recover(&StoreError::Internal(
                        "a failed write could not be undone".into(),
                    ));
                }
                unit.fail(StoreError::Internal(
                    "a write could not be completed".into(),
                ));
                for rest in units.rev() {
                    self.queue.push_front(rest);
                }
                return;
            }
            let ran = self.execute("SAVEPOINT unit").is_ok() && unit.run(&self.conn);
            if ran && self.execute("RELEASE unit").is_ok() {
                committed.push(unit);
                continue;
            }
            let own_failure = StoreError::Internal("a write could not be completed".into());
            if self.conn.is_autocommit() {
                // The failure ended the whole transaction (SQLite rolls back on a full
                // disk or an I/O error): everything run so far is gone. Answer those
                // units, and give the ones not run yet a fresh transaction.
                self.health.set(false);
                unit.fail(own_failure);
                let error = StoreError::Unavailable(
                    "the database rolled the transaction back; nothing was applied".into(),
                );
                for done in committed {
                    done.fail(error.clone());
                }
                for rest in units.rev() {
                    self.queue.push_front(rest);
                }
                return;
            }
            if self.execute("ROLLBACK TO unit").is_err() || self.execute("RELEASE unit").is_err() {
                let error = StoreError::Internal("a failed write could not be undone".into());
                self.recover(&error);
                unit.fail(own_failure);
                for done in committed {
                    done.fail(error.clone());
                }
                for rest in units.rev() {
                    self.queue.push_front(rest);
                }
                return;
            }
            // Rolled back to its savepoint: nothing of it is applied, so it may hear its
            // own error at once; the others go on.
            unit.fail(own_failure);
        }
        match self.execute("COMMIT") {
            Ok(()) => {
                self.health.set(true);
                self.commits += 1;
                if self.commits.is_multiple_of(CHECKPOINT_EVERY) {
                    // Never waits: a checkpoint already under way will see these frames.
                    let _ = self.checkpoint.try_send(());
                }
                for unit in committed {
                    unit.answer();
                }
            }
            Err(e) => {
                let error = match from_sqlite(e) {
                    StoreError::Unavailable(m) => {
                        StoreError::Unavailable(format!("could not commit: {m}"))
                    }
                    other => other,
                };
                self.recover(&error);
                for unit in committed {
                    unit.fail(error.clone());
                }
            }
        }
    }

    /// Brings the connection back outside any transaction after a failure: roll back if
    /// SQLite has not already, else reopen the connection.
    fn recover(&mut self, error: &StoreError) {
        if matches!(error, StoreError::Unavailable(_)) {
            self.health.set(false);
        }
        tracing::warn!(%error, "database write failed; rolled back");
        if self.conn.is_autocommit() {
            return;
        }
        if self.conn.execute_batch("ROLLBACK").is_ok() && self.conn.is_autocommit() {
            return;
        }
        match (self.reopen)() {
            Ok(fresh) => {
                tracing::warn!("reopened the database write connection after a failed rollback");
                self.conn = fresh;
            }
            Err(e) => tracing::error!(error = %e, "cannot reopen the database write connection"),
        }
    }
}
