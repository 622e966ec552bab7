//! The local admin channel: a Unix socket (`<data_dir>/admin.sock`, mode 0600, so only the
//! service user and root can connect) through which the CLI asks a running server to do what
//! must happen inside the process that holds the files open, such as re-encrypting a tenant
//! whose file the server has open. One JSON request line, one JSON answer line. The caller
//! is identified by the socket's peer credentials and journaled as that uid.

use crate::app::App;
use crate::audit::{Actor, ActorKind};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A request over the admin channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    RotateTenant { tenant: String },
}

/// The answer: a result, or an error with its stable code.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(default)]
    pub result: serde_json::Value,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

/// True when a server holds `server.lock` on this data directory.
pub fn server_running(data_dir: &Path) -> bool {
    crate::fsutil::open_lock_file(&data_dir.join("server.lock"))
        .map(|f| f.try_lock().is_err())
        .unwrap_or(false)
}

/// Sends one request to the running server and waits for its answer.
///
/// # Errors
/// The socket cannot be reached or the answer is malformed.
pub fn call(data_dir: &Path, request: &Request) -> Result<Answer, CallError> {
    let unreachable = |e: std::io::Error| CallError::Unreachable(e.kind().to_string());
    let mut stream =
        std::os::unix::net::UnixStream::connect(socket_path(data_dir)).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(600)))
        .map_err(unreachable)?;
    let mut line = serde_json::to_vec(request).map_err(|e| CallError::Malformed(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).map_err(unreachable)?;
    // From here the request may be running: a lost connection is not "unreachable".
    let mut answer = String::new();
    match BufReader::new(stream).read_line(&mut answer) {
        Ok(0) => return Err(CallError::Lost),
        Ok(_) => {}
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            return Err(CallError::TimedOut)
        }
        Err(_) => return Err(CallError::Lost),
    }
    serde_json::from_str(&answer).map_err(|e| CallError::Malformed(e.to_string()))
}

/// Why a call to the running server did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach the running server: {0}")]
    Unreachable(String),
    #[error(
        "the server went away before it answered; the request may or may not have taken effect"
    )]
    Lost,
    #[error("the server did not answer within 10 minutes; the request may still be running")]
    TimedOut,
    #[error("the server's answer is malformed: {0}")]
    Malformed(String),
}

fn answer_err(code: &str, message: String) -> Answer {
    Answer {
        ok: false,
        result: serde_json::Value::Null,
        code: code.to_string(),
        message,
    }
}

/// Runs one request inside the server process. Blocking: call from a blocking thread.
pub fn handle(app: &App, actor: &Actor, request: Request) -> Answer {
    tracing::info!(actor = %actor.id, request = ?request, "admin request");
    match request {
        Request::RotateTenant { tenant } => {
            let id = match crate::tenants::TenantId::parse(&tenant) {
                Ok(id) => id,
                Err(e) => return answer_err(e.code(), e.to_string()),
            };
            match crate::keys::rotate_tenant(app, actor, &id) {
                Ok(r) => Answer {
                    ok: true,
                    result: serde_json::to_value(r).unwrap_or_default(),
                    code: String::new(),
                    message: String::new(),
                },
                Err(e) => answer_err(e.code(), e.to_string()),
            }
        }
    }
}

/// Binds the admin socket (mode 0600). A stale socket file (from a server that died) is
/// replaced: the caller holds `server.lock`, so no other server owns it.
///
/// # Errors
/// The socket cannot be bound.
pub fn bind(data_dir: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the admin socket until the task is dropped.
///
/// # Errors
/// Accepting failed.
pub async fn serve(app: Arc<App>, listener: tokio::net::UnixListener) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    loop {
        let (stream, _) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            let uid = stream.peer_cred().map(|c| c.uid()).unwrap_or(u32::MAX);
            // Only root and the service's own user, whatever the socket's mode says.
            if uid != 0 && Some(uid) != own_uid() {
                tracing::warn!(uid, "admin request from another user refused");
                return;
            }
            let actor = Actor {
                kind: ActorKind::Cli,
                id: format!("uid:{uid}"),
                role: "operator".into(),
            };
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(read.take(64 * 1024));
            let answer = match reader.read_line(&mut line).await {
                Ok(_) => match serde_json::from_str::<Request>(&line) {
                    Ok(req) => tokio::task::spawn_blocking(move || handle(&app, &actor, req))
                        .await
                        .unwrap_or_else(|_| answer_err("ADM-0002", "the operation failed".into())),
                    Err(e) => answer_err("ADM-0001", format!("malformed request: {e}")),
                },
                Err(e) => answer_err("ADM-0001", format!("cannot read the request: {e}")),
            };
            if let Ok(mut bytes) = serde_json::to_vec(&answer) {
                bytes.push(b'\n');
                let _ = write.write_all(&bytes).await;
            }
        });
    }
}

fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).ok()
}
