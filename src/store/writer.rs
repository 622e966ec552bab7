//! One writer thread per open file, with group commit.
//!
//! Callers submit closures; the thread drains whatever is queued (up to [`MAX_BATCH`]) into a
//! single `BEGIN IMMEDIATE ... COMMIT`, each closure inside its own savepoint so one failing
//! job does not take the others down. With `synchronous=FULL`, the commit's fsync is shared by
//! the whole batch: that is what makes durable appends fast under concurrency. A caller is
//! answered only after the commit returned, so an acknowledged write is on disk.
//!
//! The journal head is read once per transaction, after the write lock is held, so a CLI
//! process and the server can append to the same file without forking the chain.
//!
//! The write-ahead log is folded into the main file by the writer after it has answered the
//! batch that filled it ([`CHECKPOINT_BYTES`]), not inside `COMMIT` as SQLite's automatic
//! checkpoint does: a large write (a document) is acknowledged as soon as it is durable in
//! the log, and the copy into the main file overlaps with whatever the caller does next.

use super::StoreError;
use crate::audit::journal::{self, AppendError, Head, JournalConfig};
use crate::audit::NewEntry;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::Connection;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a writer with unsigned entries sleeps at most before looking at its clock again.
const POLL: Duration = Duration::from_secs(1);

/// Largest number of jobs folded into one transaction.
pub const MAX_BATCH: usize = 1024;
/// Queue depth before submitters block: back-pressure instead of unbounded memory.
const QUEUE_DEPTH: usize = 8192;
/// Bytes of pages in the write-ahead log after which the writer folds it into the main file
/// (SQLite's own default for its automatic checkpoint is 1000 pages, this with 4 KiB pages).
pub const CHECKPOINT_BYTES: usize = 1000 * 4096;

type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A job gets its transaction, or the error that kept the batch from running it.
type Work = Box<dyn FnOnce(Result<&mut WriteTx<'_>, &StoreError>) -> (bool, Completion) + Send>;

/// Whether a job must record what it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Audited,
    Bookkeeping,
}

/// Where a change's entry landed in the file's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub hash: [u8; 32],
}

enum Msg {
    Work(Work),
    Shutdown,
}

/// The transaction a job runs in: the connection, plus the file's journal.
pub struct WriteTx<'a> {
    conn: &'a Connection,
    cfg: &'a JournalConfig,
    head: &'a mut Head,
    buf: &'a mut Vec<u8>,
    label: &'a str,
    version: u32,
    appended: u64,
    /// What the connection's authorizer lets the running job do (see [`Guard`]).
    guard: &'a AtomicU8,
}

/// What SQL the writer's connection accepts right now. While a job runs, it may not end,
/// open or nest the group transaction, nor attach another file: a `COMMIT` inside a job
/// would commit its changes without their entry and the rest of the batch with them. An
/// audited job may not change the schema or write a pragma either; bookkeeping (schema
/// steps) may.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Guard {
    /// The writer's own statements: BEGIN, SAVEPOINT, RELEASE, COMMIT.
    Writer = 0,
    Audited = 1,
    Bookkeeping = 2,
}

fn authorize(guard: &AtomicU8, ctx: &AuthContext<'_>) -> Authorization {
    let mode = guard.load(Ordering::SeqCst);
    if mode == Guard::Writer as u8 {
        return Authorization::Allow;
    }
    let denied = match &ctx.action {
        AuthAction::Transaction { .. }
        | AuthAction::Savepoint { .. }
        | AuthAction::Attach { .. }
        | AuthAction::Detach { .. } => true,
        AuthAction::Pragma { pragma_value, .. } => {
            mode == Guard::Audited as u8 && pragma_value.is_some()
        }
        AuthAction::CreateIndex { .. }
        | AuthAction::CreateTable { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateView { .. }
        | AuthAction::CreateVtable { .. }
        | AuthAction::DropIndex { .. }
        | AuthAction::DropTable { .. }
        | AuthAction::DropTrigger { .. }
        | AuthAction::DropView { .. }
        | AuthAction::DropVtable { .. }
        | AuthAction::AlterTable { .. } => mode == Guard::Audited as u8,
        _ => false,
    };
    if denied {
        Authorization::Deny
    } else {
        Authorization::Allow
    }
}

impl WriteTx<'_> {
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    pub fn now_us(&self) -> i64 {
        self.cfg.clock.now_us()
    }

    pub fn journal_id(&self) -> &str {
        &self.cfg.journal_id
    }

    /// Maps a SQLite error on this file.
    pub fn err(&self, e: &rusqlite::Error) -> StoreError {
        StoreError::from_sqlite(self.label, self.version, e)
    }

    /// Appends an audit entry in this transaction; returns its sequence number. If the job
    /// later fails, the entry is rolled back with the rest of the job.
    ///
    /// # Errors
    /// A malformed action name or a storage fault; the caller must fail its job.
    pub fn audit(&mut self, entry: NewEntry) -> Result<u64, StoreError> {
        let seq = journal::append(self.conn, self.cfg, self.head, entry, self.buf).map_err(
            |e| match e {
                AppendError::BadAction(a) => StoreError::Sqlite {
                    what: self.label.to_string(),
                    detail: format!("invalid audit action {a:?}"),
                },
                AppendError::Sql(f) => fault(self.label, self.version, &f),
            },
        )?;
        // Counted once it is in: a failed append is no entry.
        self.appended += 1;
        Ok(seq)
    }

    /// Current chain head (seq, hash) inside this transaction.
    pub fn head(&self) -> Head {
        *self.head
    }
}

fn fault(label: &str, version: u32, f: &journal::SqlFault) -> StoreError {
    let what = label.to_string();
    match f.1 {
        Some(rusqlite::ErrorCode::DiskFull) => StoreError::DiskFull { what },
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            what,
            detail: f.0.clone(),
        },
        Some(rusqlite::ErrorCode::NotADatabase) => StoreError::Decrypt { what, version },
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            StoreError::Busy { what }
        }
        _ => StoreError::Sqlite {
            what,
            detail: f.0.clone(),
        },
    }
}

/// An answer that arrives once the writer has committed (or failed) the job.
pub struct Pending<T, E> {
    rx: oneshot::Receiver<Result<T, E>>,
    label: String,
}

impl<T, E: From<StoreError>> Pending<T, E> {
    /// Blocks until the job committed. Call from a blocking context, not an async task.
    ///
    /// # Errors
    /// The job's error, the commit's error, or [`StoreError::Closed`].
    pub fn wait(self) -> Result<T, E> {
        let label = self.label;
        self.rx
            .blocking_recv()
            .unwrap_or_else(|_| Err(StoreError::Closed { what: label }.into()))
    }

    /// Awaits the commit from async code without blocking a worker thread.
    ///
    /// # Errors
    /// As [`Pending::wait`].
    pub async fn recv(self) -> Result<T, E> {
        let label = self.label;
        self.rx
            .await
            .unwrap_or_else(|_| Err(StoreError::Closed { what: label }.into()))
    }
}

/// A job that met a full queue, to be sent from a thread that may block.
pub(crate) struct Backlogged {
    tx: SyncSender<Msg>,
    msg: Msg,
}

impl Backlogged {
    fn wait_for_room(self) {
        let _ = self.tx.send(self.msg);
    }
}

/// A job counted in the writers' queue depth (`/metrics`) from the moment it is queued
/// until its completion has run or it is dropped unrun.
struct Queued;

impl Queued {
    fn new() -> Self {
        crate::metrics::global()
            .audit_queue
            .fetch_add(1, Ordering::Relaxed);
        Self
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        crate::metrics::global()
            .audit_queue
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// Handle to a file's writer thread.
pub struct Writer {
    tx: SyncSender<Msg>,
    handle: Mutex<Option<JoinHandle<Result<(), StoreError>>>>,
    label: String,
}

impl Writer {
    /// Starts the writer thread, which owns `conn` from now on.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(
        conn: Connection,
        label: String,
        version: u32,
        cfg: JournalConfig,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_DEPTH);
        let thread_label = label.clone();
        let page =
            super::page_size(&conn).map_err(|e| StoreError::from_sqlite(&label, version, &e))?;
        let fold_at = (CHECKPOINT_BYTES / page.max(512)).max(1);
        let handle = std::thread::Builder::new()
            .name(format!("writer {}", short(&label)))
            .spawn(move || run(conn, &thread_label, version, &cfg, rx, fold_at))
            .map_err(|e| StoreError::Io {
                what: label.clone(),
                reason: format!("cannot start writer thread: {e}"),
            })?;
        Ok(Self {
            tx,
            handle: Mutex::new(Some(handle)),
            label,
        })
    }

    /// Queues a change: `f` makes it and returns its output together with the audit entry
    /// that records it, which is appended in the same transaction. A change cannot commit
    /// without its entry, and an entry cannot commit without its change.
    pub fn change<T, E, F>(&self, f: F) -> Pending<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<(T, NewEntry), E> + Send + 'static,
    {
        self.enqueue(Mode::Audited, move |tx| {
            let (out, entry) = f(tx)?;
            tx.audit(entry)?;
            Ok(out)
        })
    }

    /// [`Writer::change`] for async code: awaits the commit and never blocks a runtime worker
    /// (a full queue is waited for on a blocking thread).
    ///
    /// # Errors
    /// As [`Pending::wait`].
    pub async fn change_async<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<(T, NewEntry), E> + Send + 'static,
    {
        self.enqueue_async(Mode::Audited, move |tx| {
            let (out, entry) = f(tx)?;
            tx.audit(entry)?;
            Ok(out)
        })
        .await
    }

    /// As [`Writer::change`], and also answers where the entry landed in the chain.
    pub fn change_recorded<T, E, F>(&self, f: F) -> Pending<(T, Receipt), E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<(T, NewEntry), E> + Send + 'static,
    {
        self.enqueue(Mode::Audited, move |tx| {
            let (out, entry) = f(tx)?;
            let seq = tx.audit(entry)?;
            Ok((
                out,
                Receipt {
                    seq,
                    hash: tx.head().hash,
                },
            ))
        })
    }

    /// Queues a write that records no change of its own: the journal's own upkeep (anchors),
    /// the outbox that carries entries between journals, and schema migrations. Only those
    /// call this; everything else goes through [`Writer::change`]. The job may still append
    /// entries (outbox deliveries do).
    pub fn bookkeeping<T, E, F>(&self, f: F) -> Pending<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        self.enqueue(Mode::Bookkeeping, f)
    }

    /// As [`Writer::change`], for a change that may find nothing to do: `None` instead of an
    /// entry says so, and the writer refuses the job if it changed rows all the same.
    pub fn change_or_nothing<T, E, F>(&self, f: F) -> Pending<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<(T, Option<NewEntry>), E> + Send + 'static,
    {
        self.enqueue(Mode::Audited, move |tx| {
            let (out, entry) = f(tx)?;
            if let Some(entry) = entry {
                tx.audit(entry)?;
            }
            Ok(out)
        })
    }

    /// [`Writer::bookkeeping`] for a caller that cannot wait (a writer thread's checkpoint
    /// hook): `done` is told the outcome once the job has committed or failed.
    pub fn bookkeeping_then<T, E, F, D>(&self, f: F, done: D)
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        D: FnOnce(Result<T, E>) + Send + 'static,
    {
        // Blocking only under back-pressure, which a checkpoint hook never meets in practice
        // (it runs once per checkpoint); a full queue then waits like any other submitter.
        let _ = self.enqueue_with(Mode::Bookkeeping, f, done, true);
    }

    /// Queues `f` to run inside the next group-commit transaction. An [`Mode::Audited`] job
    /// that changed rows but appended no entry is rolled back with [`StoreError::Unaudited`].
    pub(crate) fn enqueue<T, E, F>(&self, mode: Mode, f: F) -> Pending<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        self.enqueue_pending(mode, f, true).0
    }

    fn enqueue_pending<T, E, F>(
        &self,
        mode: Mode,
        f: F,
        block: bool,
    ) -> (Pending<T, E>, Option<Backlogged>)
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel::<Result<T, E>>();
        let backlog = self.enqueue_with(
            mode,
            f,
            move |answer| {
                let _ = reply.send(answer);
            },
            block,
        );
        let pending = Pending {
            rx,
            label: self.label.clone(),
        };
        (pending, backlog)
    }

    /// Queues `f` from async code and awaits its commit without ever blocking a runtime
    /// worker: when the queue is full, the wait for room happens on a blocking thread.
    ///
    /// # Errors
    /// As [`Pending::wait`].
    pub(crate) async fn enqueue_async<T, E, F>(&self, mode: Mode, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
    {
        let (pending, backlog) = self.enqueue_pending(mode, f, false);
        if let Some(backlog) = backlog {
            let _ = tokio::task::spawn_blocking(move || backlog.wait_for_room()).await;
        }
        pending.recv().await
    }

    /// The one way into the queue. A job that never runs (the writer has stopped) is dropped
    /// with `done` uncalled; [`Pending`] turns that into [`StoreError::Closed`], which
    /// therefore means "did not run".
    fn enqueue_with<T, E, F, D>(&self, mode: Mode, f: F, done: D, block: bool) -> Option<Backlogged>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<T, E> + Send + 'static,
        D: FnOnce(Result<T, E>) + Send + 'static,
    {
        let label = self.label.clone();
        let queued = Queued::new();
        let work: Work = Box::new(move |wtx| {
            let result = match wtx {
                Ok(wtx) => {
                    let before = wtx.conn.total_changes();
                    let guard = match mode {
                        Mode::Audited => Guard::Audited,
                        Mode::Bookkeeping => Guard::Bookkeeping,
                    };
                    wtx.guard.store(guard as u8, Ordering::SeqCst);
                    // Caught here, where the reply is at hand, so the caller learns that the
                    // job panicked (and that it may not be retried as if it never ran).
                    let outcome = catch_unwind(AssertUnwindSafe(|| f(wtx)));
                    wtx.guard.store(Guard::Writer as u8, Ordering::SeqCst);
                    match outcome {
                        Ok(Ok(_))
                            if mode == Mode::Audited
                                && wtx.appended == 0
                                && wtx.conn.total_changes() != before =>
                        {
                            tracing::error!(file = %label, "a write changed rows without an audit entry; it was rolled back");
                            Err(E::from(StoreError::Unaudited { what: label }))
                        }
                        Ok(r) => r,
                        Err(_) => {
                            tracing::error!(file = %label, "a write job panicked; it was rolled back");
                            Err(E::from(StoreError::JobPanicked { what: label }))
                        }
                    }
                }
                Err(e) => Err(E::from(e.clone())),
            };
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |commit_err| {
                let _queued = queued;
                let answer = match (result, commit_err) {
                    (Ok(v), None) => Ok(v),
                    (Ok(_), Some(e)) => Err(E::from(e.clone())),
                    (Err(e), _) => Err(e),
                };
                done(answer);
            });
            (ok, completion)
        });
        let msg = Msg::Work(work);
        if block {
            let _ = self.tx.send(msg);
            return None;
        }
        match self.tx.try_send(msg) {
            Err(mpsc::TrySendError::Full(msg)) => Some(Backlogged {
                tx: self.tx.clone(),
                msg,
            }),
            Ok(()) | Err(mpsc::TrySendError::Disconnected(_)) => None,
        }
    }

    /// False once the writer thread has stopped (shut down, or died).
    pub fn is_running(&self) -> bool {
        self.handle
            .lock()
            .map(|h| h.as_ref().is_some_and(|h| !h.is_finished()))
            .unwrap_or(false)
    }

    /// Commits everything queued before this call, signs a final checkpoint and stops.
    ///
    /// # Errors
    /// The final checkpoint or WAL fold failed.
    pub fn shutdown(&self) -> Result<(), StoreError> {
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        let Some(handle) = handle else {
            return Ok(());
        };
        let _ = self.tx.send(Msg::Shutdown);
        handle.join().unwrap_or_else(|_| {
            Err(StoreError::Closed {
                what: self.label.clone(),
            })
        })
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// The writer's own statements, prepared once instead of parsed for every batch. Held apart
/// from the connection's statement cache, which is the jobs': a job never holds them.
struct Own<'c> {
    conn: &'c Connection,
    begin: rusqlite::Statement<'c>,
    savepoint: rusqlite::Statement<'c>,
    release: rusqlite::Statement<'c>,
    commit: rusqlite::Statement<'c>,
}

impl<'c> Own<'c> {
    fn prepare(conn: &'c Connection) -> rusqlite::Result<Self> {
        Ok(Self {
            conn,
            begin: conn.prepare("BEGIN IMMEDIATE")?,
            savepoint: conn.prepare("SAVEPOINT job")?,
            release: conn.prepare("RELEASE job")?,
            commit: conn.prepare("COMMIT")?,
        })
    }
}

/// Runs one of the writer's own statements.
fn run_own(st: &mut rusqlite::Statement<'_>) -> rusqlite::Result<()> {
    st.execute([]).map(|_| ())
}

fn short(label: &str) -> String {
    label.chars().take(12).collect()
}

fn run(
    mut conn: Connection,
    label: &str,
    version: u32,
    cfg: &JournalConfig,
    rx: mpsc::Receiver<Msg>,
    fold_at: usize,
) -> Result<(), StoreError> {
    let mut buf = Vec::with_capacity(512);
    let guard = std::sync::Arc::new(AtomicU8::new(Guard::Writer as u8));
    {
        let guard = guard.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| authorize(&guard, &ctx)))
            .map_err(|e| StoreError::from_sqlite(label, version, &e))?;
    }
    // Replaces SQLite's automatic checkpoint (the same hook): each commit records how many
    // pages the log holds, and the loop below folds them after answering.
    let wal_pages = std::sync::Arc::new(AtomicUsize::new(0));
    {
        let pages = wal_pages.clone();
        conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, n| {
            pages.store(usize::try_from(n).unwrap_or(0), Ordering::Relaxed);
            Ok(())
        }))
        .map_err(|e| StoreError::from_sqlite(label, version, &e))?;
    }
    let mut own = Own::prepare(&conn).map_err(|e| StoreError::from_sqlite(label, version, &e))?;
    // When entries are waiting for a checkpoint, wake up in time to sign them. That includes
    // entries left unsigned by a process that crashed: a long-running writer signs them once
    // the interval has passed.
    // Measured on the journal's clock, so tests can move time; the thread still wakes at
    // least every `POLL` while entries wait, to notice a clock that jumped.
    let now = || cfg.clock.now_us();
    let interval_us = i64::try_from(cfg.checkpoint_interval.as_micros()).unwrap_or(i64::MAX);
    let mut unsigned_since: Option<i64> = match journal::load_head(&conn) {
        Ok(h) if h.seq > h.checkpoint_seq => Some(now()),
        _ => None,
    };
    // Whether this process appended anything. Only then does closing sign the tail: a
    // read-only command (verify, export, list) must not sign what it merely looked at.
    let mut appended = false;
    // The last checkpoint position told to `on_checkpoint`.
    let mut reported = 0u64;
    loop {
        let due_in_us = unsigned_since.map(|t| interval_us.saturating_sub(now().saturating_sub(t)));
        let wait = match due_in_us {
            Some(us) => Duration::from_micros(us.max(0) as u64).min(POLL),
            None => Duration::from_secs(3600),
        };
        let first = match rx.recv_timeout(wait) {
            Ok(Msg::Work(w)) => w,
            Ok(Msg::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                let due = unsigned_since.is_some_and(|t| now().saturating_sub(t) >= interval_us);
                if due {
                    match checkpoint_now(&conn, cfg) {
                        Ok(head) => {
                            unsigned_since = None;
                            report_checkpoint(cfg, &head, &mut reported);
                        }
                        Err(e) => {
                            tracing::warn!(file = label, error = %e, "checkpoint failed; will retry");
                            unsigned_since = Some(now());
                        }
                    }
                }
                continue;
            }
        };
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        let mut stop = false;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Work(w)) => batch.push(w),
                Ok(Msg::Shutdown) => {
                    stop = true;
                    break;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if let Some((head, n)) = run_batch(&mut own, label, version, cfg, batch, &mut buf, &guard) {
            appended |= n > 0;
            report_checkpoint(cfg, &head, &mut reported);
            if head.seq == head.checkpoint_seq {
                unsigned_since = None;
            } else if unsigned_since.is_none() {
                unsigned_since = Some(now());
            }
        }
        if wal_pages.load(Ordering::Relaxed) >= fold_at {
            fold_log(&conn, label, &wal_pages);
        }
        if stop {
            break;
        }
    }
    let signed = if appended {
        checkpoint_now(&conn, cfg).map(|head| report_checkpoint(cfg, &head, &mut reported))
    } else {
        Ok(())
    };
    let result = signed
        .and_then(|()| {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(journal::SqlFault::from)
        })
        .map_err(|f| fault(label, version, &f));
    drop(own);
    drop(conn);
    result
}

/// Copies the log's pages into the main file without waiting for readers (`PASSIVE`, as
/// SQLite's automatic checkpoint does). A reader on an old snapshot can hold some back; they
/// are copied after a later commit. A failure is logged: the log still holds every page.
fn fold_log(conn: &Connection, label: &str, wal_pages: &AtomicUsize) {
    let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match r {
        Ok((log, copied)) if copied >= log => wal_pages.store(0, Ordering::Relaxed),
        Ok(_) => {}
        Err(e) => tracing::warn!(file = label, error = %e, "WAL checkpoint failed; will retry"),
    }
}

fn report_checkpoint(cfg: &JournalConfig, head: &Head, reported: &mut u64) {
    if head.checkpoint_seq > *reported {
        *reported = head.checkpoint_seq;
        if let Some(hook) = &cfg.on_checkpoint {
            hook(head.checkpoint_seq, head.checkpoint_hash);
        }
    }
}

/// Signs a checkpoint at the head if entries are unsigned, in its own transaction.
fn checkpoint_now(conn: &Connection, cfg: &JournalConfig) -> Result<Head, journal::SqlFault> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let r = (|| {
        let mut head = journal::load_head(conn)?;
        let wrote = journal::write_checkpoint(conn, cfg, &mut head, cfg.clock.now_us())?;
        Ok::<_, rusqlite::Error>((head, wrote))
    })();
    match r {
        Ok((head, true)) => conn
            .execute_batch("COMMIT")
            .map(|()| head)
            .map_err(Into::into),
        Ok((head, false)) => conn
            .execute_batch("ROLLBACK")
            .map(|()| head)
            .map_err(Into::into),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e.into())
        }
    }
}

/// Runs one group-commit transaction; returns the head after commit and how many entries
/// committed jobs appended, or `None` if it failed.
fn run_batch(
    own: &mut Own<'_>,
    label: &str,
    version: u32,
    cfg: &JournalConfig,
    batch: Vec<Work>,
    buf: &mut Vec<u8>,
    guard: &AtomicU8,
) -> Option<(Head, u64)> {
    let conn = own.conn;
    let fail_all = |batch: Vec<Work>, completions: Vec<Completion>, e: &StoreError| {
        let e = &e
            .clone()
            .on_full_disk(conn.path().map(std::path::Path::new));
        tracing::warn!(file = label, jobs = batch.len() + completions.len(), error = %e,
            "write batch failed; nothing in it was committed");
        for done in completions {
            done(Some(e));
        }
        for work in batch {
            let (_, done) = work(Err(e));
            done(Some(e));
        }
    };
    if let Err(e) = run_own(&mut own.begin) {
        let err = StoreError::from_sqlite(label, version, &e);
        fail_all(batch, Vec::new(), &err);
        return None;
    }
    let mut head = match journal::load_head(conn) {
        Ok(h) => h,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            fail_all(
                batch,
                Vec::new(),
                &StoreError::from_sqlite(label, version, &e),
            );
            return None;
        }
    };
    let mut completions: Vec<Completion> = Vec::with_capacity(batch.len());
    let mut appended = 0u64;
    let mut jobs = batch.into_iter();
    while let Some(work) = jobs.next() {
        if let Err(e) = run_own(&mut own.savepoint) {
            let err = StoreError::from_sqlite(label, version, &e);
            let _ = conn.execute_batch("ROLLBACK");
            let mut rest = vec![work];
            rest.extend(jobs);
            fail_all(rest, completions, &err);
            return None;
        }
        let saved = head;
        let mut job_appended = 0;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut wtx = WriteTx {
                conn,
                cfg,
                head: &mut head,
                buf,
                label,
                version,
                appended: 0,
                guard,
            };
            let r = work(Ok(&mut wtx));
            job_appended = wtx.appended;
            r
        }));
        let (ok, done) = match outcome {
            Ok(pair) => pair,
            Err(_) => {
                tracing::error!(file = label, "a write job panicked; it was rolled back");
                (false, Box::new(|_: Option<&StoreError>| {}) as Completion)
            }
        };
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back on its own (disk full, I/O error):
            // every job in this batch is lost, so none may be acknowledged.
            let err = StoreError::Io {
                what: label.to_string(),
                reason: "the transaction was aborted by the storage engine".into(),
            };
            completions.push(done);
            fail_all(jobs.collect(), completions, &err);
            return None;
        }
        let ended = if ok {
            appended += job_appended;
            run_own(&mut own.release)
        } else {
            head = saved;
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        if let Err(e) = ended {
            let err = StoreError::from_sqlite(label, version, &e);
            let _ = conn.execute_batch("ROLLBACK");
            completions.push(done);
            fail_all(jobs.collect(), completions, &err);
            return None;
        }
        completions.push(done);
    }
    let started = std::time::Instant::now();
    let committed = run_own(&mut own.commit);
    let metrics = crate::metrics::global();
    metrics.audit_commit.observe(started.elapsed());
    match committed {
        Ok(()) => {
            metrics
                .audit_entries
                .fetch_add(appended, std::sync::atomic::Ordering::Relaxed);
            for done in completions {
                done(None);
            }
            Some((head, appended))
        }
        Err(e) => {
            let err = StoreError::from_sqlite(label, version, &e);
            let _ = conn.execute_batch("ROLLBACK");
            fail_all(Vec::new(), completions, &err);
            None
        }
    }
}
