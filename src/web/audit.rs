//! The audit log of the caller's realm: filter by actor, action and time, page through with
//! keyset pagination (the filters stay in the URL), verify the chain with one button, export.

use super::access::{Access, PrincipalOf, Routes};
use super::auth::Principal;
use super::ui::{error_page, header_for, in_realm, render, when, FieldError, Header};
use super::AppState;
use crate::audit::browse::{self, Filter};
use crate::audit::export::ExportFormat;
use crate::identity::{IdentityError, Permission};
use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub fn routes() -> Routes {
    Routes::new()
        .route(
            "/audit",
            Access::Allowed(Permission::AuditRead),
            get(audit_log),
        )
        .route(
            "/audit/verify",
            Access::Allowed(Permission::AuditVerify),
            post(audit_verify),
        )
        .route(
            "/audit/export",
            Access::Allowed(Permission::AuditExport),
            get(audit_export),
        )
}

/// The filters as typed, kept in the URL.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct Params {
    actor: String,
    action: String,
    from: String,
    to: String,
    before: String,
    format: String,
}

fn day_start(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(&format!("{}T00:00:00Z", s.trim())).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_micros()).ok()
}

/// The filter, or the field that is wrong and why.
fn filter(q: &Params) -> Result<Filter, Vec<FieldError>> {
    let opt =
        |s: &str| (!s.trim().is_empty()).then(|| s.trim().chars().take(200).collect::<String>());
    let mut f = Filter {
        actor: opt(&q.actor),
        action: opt(&q.action),
        limit: 50,
        ..Filter::default()
    };
    if !q.from.trim().is_empty() {
        f.from_us = Some(
            day_start(&q.from)
                .ok_or_else(|| FieldError::new("from", "Enter the start date as YYYY-MM-DD"))?,
        );
    }
    if !q.to.trim().is_empty() {
        let end = day_start(&q.to)
            .ok_or_else(|| FieldError::new("to", "Enter the end date as YYYY-MM-DD"))?;
        f.to_us = Some(end.saturating_add(86_400_000_000));
    }
    if let (Some(a), Some(b)) = (f.from_us, f.to_us) {
        if a >= b {
            return Err(FieldError::new(
                "to",
                "The end date must not be before the start date",
            ));
        }
    }
    if !q.before.trim().is_empty() {
        f.before_seq = Some(
            q.before
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    FieldError::new(
                        "before",
                        "The page position is not a number; start again from the first page",
                    )
                })?,
        );
    }
    Ok(f)
}

pub struct Line {
    pub seq: i64,
    pub time: String,
    pub actor: String,
    pub source: String,
    pub action: String,
    pub target: String,
    pub params: String,
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "audit/log.html")]
struct LogPage {
    header: Option<Header>,
    q: Params,
    lines: Vec<Line>,
    next: Option<String>,
    errors: Vec<FieldError>,
    verified: Option<(bool, String)>,
    may_verify: bool,
    may_export: bool,
}

fn query_with(q: &Params, before: i64) -> String {
    serde_urlencoded::to_string([
        ("actor", q.actor.as_str()),
        ("action", q.action.as_str()),
        ("from", q.from.as_str()),
        ("to", q.to.as_str()),
        ("before", &before.to_string()),
    ])
    .unwrap_or_default()
}

async fn log_page(
    state: &AppState,
    p: &Principal,
    q: Params,
    verified: Option<(bool, String)>,
) -> Response {
    let (f, errors) = match filter(&q) {
        Ok(f) => (Some(f), Vec::new()),
        Err(e) => (None, e),
    };
    let page = match f {
        Some(f) => {
            match in_realm(state, p, None, move |ctx, _| browse::page_blocking(ctx, &f)).await {
                Ok(page) => Some(page),
                Err(e) => return error_page(state, Some(p), e).await,
            }
        }
        None => None,
    };
    let (lines, next) = match page {
        Some(page) => (
            page.rows
                .into_iter()
                .map(|r| Line {
                    seq: r.seq,
                    time: when(r.time_us),
                    actor: format!("{} {} ({})", r.actor_kind, r.actor_id, r.actor_role),
                    source: if r.source_ip.is_empty() {
                        "-".into()
                    } else {
                        r.source_ip
                    },
                    action: r.action,
                    target: r.target,
                    params: r.params,
                    outcome: r.outcome,
                })
                .collect(),
            page.next_before.map(|b| query_with(&q, b)),
        ),
        None => (Vec::new(), None),
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = LogPage {
        header: header_for(state, p, "/audit").await,
        q,
        lines,
        next,
        errors,
        verified,
        may_verify: p.permissions.contains(Permission::AuditVerify),
        may_export: p.permissions.contains(Permission::AuditExport),
    };
    render(status, &page)
}

/// The filters from the URL; a malformed query string reads as no filter.
fn params(uri: &Uri) -> Params {
    serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default()
}

async fn audit_log(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    uri: Uri,
) -> Response {
    log_page(&state, &p, params(&uri), None).await
}

async fn audit_verify(State(state): State<AppState>, PrincipalOf(p): PrincipalOf) -> Response {
    let done = in_realm(&state, &p, None, |ctx, app| -> Result<_, IdentityError> {
        let keys = app.trusted_keys(&browse::journal_id(ctx));
        let anchor = match crate::door::Door::tenant_id(ctx) {
            Some(id) => app
                .system()
                .read(|c| crate::store::system::anchor(c, id).map_err(|e| app.system().err(&e)))?,
            None => None,
        };
        browse::verify_blocking(ctx, &keys, anchor)
    })
    .await;
    let verified = match done {
        Ok(r) => match &r.problem {
            None => (
                true,
                format!(
                    "The journal is intact: {} entries, {} signed checkpoints, {} entries after the last checkpoint.",
                    r.entries, r.checkpoints, r.unsigned_tail
                ),
            ),
            Some(problem) => (
                false,
                format!("The journal is damaged at entry {}: {}.", problem.seq, problem.kind.as_str()),
            ),
        },
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    log_page(&state, &p, Params::default(), Some(verified)).await
}

async fn audit_export(
    State(state): State<AppState>,
    PrincipalOf(p): PrincipalOf,
    uri: Uri,
) -> Response {
    let q = params(&uri);
    let (format, ext, mime) = match q.format.as_str() {
        "" | "ndjson" => (ExportFormat::Ndjson, "ndjson", "application/x-ndjson"),
        "csv" => (ExportFormat::Csv, "csv", "text/csv; charset=utf-8"),
        _ => {
            return error_page(
                &state,
                Some(&p),
                IdentityError::BadName("the export format must be ndjson or csv".into()),
            )
            .await;
        }
    };
    let realm = match &p.place {
        crate::identity::sessions::Place::Tenant(t) => t.to_string(),
        crate::identity::sessions::Place::Platform => "platform".to_string(),
    };
    let slot = match ExportSlot::take(&state.exports, realm) {
        Ok(slot) => slot,
        Err(e) => return error_page(&state, Some(&p), e).await,
    };
    // Read on a blocking thread and sent on in chunks as it is read. The first message
    // decides the answer: data starts a download; an error (or none) before any byte
    // gives an error page. An error later cuts the download short, so a broken export is
    // never taken for a whole one: the body ends cleanly only once the export said it is
    // complete. A reader that stops reading, or an export that runs past its time, ends
    // it, so no thread and no read snapshot (which holds back the log's checkpoints) is
    // kept by a client.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    let complete = Arc::new(AtomicBool::new(false));
    let task = {
        let (state, p, complete) = (state.clone(), p.clone(), complete.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::spawn(async move {
            let _slot = slot;
            in_realm(&state, &p, None, move |ctx, _| {
                use std::io::Write as _;
                let chunks = Chunks::new(tx, handle, EXPORT_STALL, EXPORT_LIMIT);
                let mut out = std::io::BufWriter::with_capacity(EXPORT_CHUNK, chunks);
                let written = browse::export_blocking(ctx, format, &mut out)
                    .and_then(|n| out.flush().map(|()| n).map_err(|e| export_cut(&e)));
                complete.store(written.is_ok(), Ordering::SeqCst);
                written
            })
            .await
        })
    };
    let first = match rx.recv().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(_)) | None => {
            return match task.await {
                Ok(Err(e)) => error_page(&state, Some(&p), e).await,
                // A journal always holds entries; finishing without writing one is a fault.
                Ok(Ok(_)) | Err(_) => {
                    error_page(
                        &state,
                        Some(&p),
                        export_cut(&std::io::ErrorKind::Other.into()),
                    )
                    .await
                }
            };
        }
    };
    let body = axum::body::Body::from_stream(
        futures_util::stream::once(async move { Ok(first) }).chain(rest_of_export(rx, complete)),
    );
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"audit.{ext}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

/// Exports of one realm's journal at a time. Each holds a reader of the realm's file (of a
/// handful) and a snapshot that keeps the log from being folded for as long as it runs:
/// more at once would leave the realm's other requests without readers.
const EXPORTS_PER_REALM: usize = 2;

/// One running export of a realm's journal, given back when the export ends.
struct ExportSlot {
    exports: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    realm: String,
}

impl ExportSlot {
    fn take(
        exports: &Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
        realm: String,
    ) -> Result<Self, IdentityError> {
        let mut running = exports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = running.entry(realm.clone()).or_insert(0);
        if *n >= EXPORTS_PER_REALM {
            return Err(IdentityError::ExportsRunning(*n));
        }
        *n += 1;
        Ok(Self {
            exports: exports.clone(),
            realm,
        })
    }
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        let mut running = self
            .exports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = running.get_mut(&self.realm) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                running.remove(&self.realm);
            }
        }
    }
}

/// Bytes of journal sent at a time.
const EXPORT_CHUNK: usize = 16 * 1024;
/// Longest an export waits for its reader to take the next chunk.
const EXPORT_STALL: Duration = Duration::from_secs(60);
/// Longest an export runs (a journal of millions of entries takes a few minutes).
const EXPORT_LIMIT: Duration = Duration::from_secs(30 * 60);

/// The export's chunks after the first, then an error in place of the end unless the export
/// finished whole (`complete`), so that a cut download never looks like a whole one.
fn rest_of_export(
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    complete: Arc<AtomicBool>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(Some((rx, complete)), |state| async move {
        let (mut rx, complete) = state?;
        match rx.recv().await {
            Some(chunk) => Some((chunk, Some((rx, complete)))),
            None if complete.load(Ordering::SeqCst) => None,
            None => Some((Err(std::io::Error::other("export cut short")), None)),
        }
    })
}

/// Hands each write on to the response, from a blocking thread. Fails once the response is
/// gone, when the reader has taken nothing for `stall`, or past `limit` from the start.
struct Chunks {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    handle: tokio::runtime::Handle,
    stall: Duration,
    deadline: tokio::time::Instant,
}

impl Chunks {
    fn new(
        tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
        handle: tokio::runtime::Handle,
        stall: Duration,
        limit: Duration,
    ) -> Self {
        Self {
            tx,
            handle,
            stall,
            deadline: tokio::time::Instant::now() + limit,
        }
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::io::{Error, ErrorKind};
        let left = self
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(Error::new(
                ErrorKind::TimedOut,
                "the export ran out of time",
            ));
        }
        let (wait, tx) = (left.min(self.stall), &self.tx);
        let send = async move {
            tokio::time::timeout(wait, tx.send(Ok(Bytes::copy_from_slice(buf)))).await
        };
        match self.handle.block_on(send) {
            Ok(Ok(())) => Ok(buf.len()),
            Ok(Err(_)) => Err(Error::new(ErrorKind::BrokenPipe, "the reader went away")),
            Err(_) => Err(Error::new(
                ErrorKind::TimedOut,
                "the reader stopped reading",
            )),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn export_cut(e: &std::io::Error) -> IdentityError {
    IdentityError::Store(crate::store::StoreError::Io {
        what: "journal export".into(),
        reason: e.kind().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Write as _};

    #[test]
    fn a_realm_runs_at_most_two_exports_and_each_ending_frees_its_place() {
        let exports = Arc::default();
        let a1 = ExportSlot::take(&exports, "a".into()).unwrap();
        let a2 = ExportSlot::take(&exports, "a".into()).unwrap();
        let refused = ExportSlot::take(&exports, "a".into()).err().unwrap();
        assert!(
            matches!(refused, IdentityError::ExportsRunning(2)),
            "{refused}"
        );
        // Another realm's exports are its own.
        let b = ExportSlot::take(&exports, "b".into()).unwrap();
        drop(a1);
        let a3 = ExportSlot::take(&exports, "a".into()).unwrap();
        drop((a2, a3, b));
        assert!(exports.lock().unwrap().is_empty());
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn an_export_whose_reader_stalls_or_leaves_or_runs_out_of_time_stops() {
        let rt = runtime();
        let stall = Duration::from_millis(50);
        // A reader that takes nothing: the channel holds one chunk, the next write waits
        // for the stall and gives up.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut chunks = Chunks::new(tx, rt.handle().clone(), stall, Duration::from_secs(60));
        let started = std::time::Instant::now();
        assert_eq!(chunks.write(b"one").unwrap(), 3);
        let e = chunks.write(b"two").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() >= stall);
        // A reader that went away.
        drop(rx);
        let e = chunks.write(b"three").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe, "{e}");
        // An export past its time stops even with a reader keeping up.
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let mut chunks = Chunks::new(tx, rt.handle().clone(), stall, Duration::ZERO);
        let e = chunks.write(b"late").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
        // A reader that reads gets every chunk, in order.
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let mut chunks = Chunks::new(tx, rt.handle().clone(), stall, Duration::from_secs(60));
        let reader = rt.spawn(async move {
            let mut got = Vec::new();
            while let Some(c) = rx.recv().await {
                got.extend_from_slice(&c.unwrap());
            }
            got
        });
        for i in 0..20u8 {
            assert_eq!(chunks.write(&[i]).unwrap(), 1);
        }
        drop(chunks);
        assert_eq!(rt.block_on(reader).unwrap(), (0..20u8).collect::<Vec<_>>());
    }

    #[test]
    fn a_cut_export_ends_in_an_error_and_a_whole_one_cleanly() {
        let rt = runtime();
        for whole in [true, false] {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let complete = Arc::new(AtomicBool::new(whole));
            rt.block_on(tx.send(Ok(Bytes::from_static(b"x")))).unwrap();
            drop(tx);
            let items: Vec<std::io::Result<Bytes>> =
                rt.block_on(rest_of_export(rx, complete).collect());
            assert_eq!(items.len(), if whole { 1 } else { 2 }, "whole: {whole}");
            assert_eq!(items[0].as_ref().unwrap().as_ref(), b"x");
            if !whole {
                assert!(items[1].is_err());
            }
        }
    }
}
