//! Streaming export of a journal as NDJSON or CSV, each entry with its hashes, so the
//! customer's security team can re-verify the chain outside Strongroom.
//!
//! NDJSON carries `params` as the exact JSON text that was hashed. CSV is meant for
//! spreadsheets: cells that a spreadsheet would run as a formula (starting with `=`, `+`, `-`,
//! `@`, tab or carriage return) get a leading `'`; verify from NDJSON, not from CSV.

use rusqlite::Connection;
use serde::Serialize;
use serde_json::value::RawValue;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Ndjson,
    Csv,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot read the journal: {0}")]
    Read(String),
    #[error("cannot write the export: {0}")]
    Write(String),
}

#[derive(Serialize)]
struct Line<'a> {
    journal: &'a str,
    seq: u64,
    format: i64,
    time: String,
    time_us: i64,
    actor: Actor<'a>,
    source_ip: &'a str,
    action: &'a str,
    target: &'a str,
    params: &'a RawValue,
    outcome: &'a str,
    duration_us: u64,
    prev_hash: String,
    hash: String,
}

#[derive(Serialize)]
struct Actor<'a> {
    kind: &'a str,
    id: &'a str,
    role: &'a str,
}

const CSV_HEADER: [&str; 16] = [
    "journal",
    "seq",
    "format",
    "time",
    "time_us",
    "actor_kind",
    "actor_id",
    "actor_role",
    "source_ip",
    "action",
    "target",
    "params",
    "outcome",
    "duration_us",
    "prev_hash",
    "hash",
];

fn csv_cell(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}

enum Sink<'w> {
    Csv(Box<csv::Writer<&'w mut dyn Write>>),
    Json(&'w mut dyn Write),
}

/// Writes entries with `seq >= since` to `out`; returns how many were written.
///
/// # Errors
/// The journal cannot be read or `out` cannot be written.
pub fn export(
    conn: &Connection,
    journal_id: &str,
    format: ExportFormat,
    since: u64,
    out: &mut dyn Write,
) -> Result<u64, ExportError> {
    let rd = |e: rusqlite::Error| ExportError::Read(e.to_string());
    let wr = |e: std::io::Error| ExportError::Write(e.kind().to_string());
    conn.execute_batch("BEGIN").map_err(rd)?;
    let mut st = conn
        .prepare(
            "SELECT seq, format, time_us, actor_kind, actor_id, actor_role, source_ip, action, \
             target, params, outcome, duration_us, prev_hash, hash FROM audit_entries \
             WHERE seq >= ?1 ORDER BY seq",
        )
        .map_err(rd)?;
    // Sequence numbers are SQLite integers: anything past i64::MAX matches nothing (a
    // wrapping cast would have exported the whole journal).
    let Ok(since) = i64::try_from(since) else {
        return Ok(0);
    };
    let mut rows = st.query([since]).map_err(rd)?;
    let mut sink = match format {
        ExportFormat::Csv => {
            // Every cell quoted: a spreadsheet whose list separator is `;` would otherwise
            // split `x;=cmd…` into a cell of its own that starts with `=`.
            let mut w = csv::WriterBuilder::new()
                .quote_style(csv::QuoteStyle::Always)
                .from_writer(out);
            w.write_record(CSV_HEADER)
                .map_err(|e| ExportError::Write(e.to_string()))?;
            Sink::Csv(Box::new(w))
        }
        ExportFormat::Ndjson => Sink::Json(out),
    };
    let mut n = 0u64;
    while let Some(r) = rows.next().map_err(rd)? {
        let s = |i: usize| -> Result<&str, ExportError> {
            r.get_ref(i)
                .and_then(|v| v.as_str().map_err(Into::into))
                .map_err(rd)
        };
        let seq = r.get::<_, i64>(0).map_err(rd)? as u64;
        let time_us: i64 = r.get(2).map_err(rd)?;
        let params_text = s(9)?;
        let prev: Vec<u8> = r.get(12).map_err(rd)?;
        let hash: Vec<u8> = r.get(13).map_err(rd)?;
        match &mut sink {
            Sink::Csv(w) => {
                let seq_s = seq.to_string();
                let fmt_s = r.get::<_, i64>(1).map_err(rd)?.to_string();
                let time_s = crate::clock::format_rfc3339(time_us);
                let time_us_s = time_us.to_string();
                let dur_s = r.get::<_, i64>(11).map_err(rd)?.to_string();
                let prev_s = hex::encode(&prev);
                let hash_s = hex::encode(&hash);
                let cells = [
                    journal_id,
                    &seq_s,
                    &fmt_s,
                    &time_s,
                    &time_us_s,
                    s(3)?,
                    s(4)?,
                    s(5)?,
                    s(6)?,
                    s(7)?,
                    s(8)?,
                    params_text,
                    s(10)?,
                    &dur_s,
                    &prev_s,
                    &hash_s,
                ];
                w.write_record(cells.iter().map(|c| csv_cell(c).into_owned()))
                    .map_err(|e| ExportError::Write(e.to_string()))?;
            }
            Sink::Json(out) => {
                let params: &RawValue = serde_json::from_str(params_text)
                    .map_err(|_| ExportError::Read(format!("entry {seq} has malformed params")))?;
                let line = Line {
                    journal: journal_id,
                    seq,
                    format: r.get(1).map_err(rd)?,
                    time: crate::clock::format_rfc3339(time_us),
                    time_us,
                    actor: Actor {
                        kind: s(3)?,
                        id: s(4)?,
                        role: s(5)?,
                    },
                    source_ip: s(6)?,
                    action: s(7)?,
                    target: s(8)?,
                    params,
                    outcome: s(10)?,
                    duration_us: r.get::<_, i64>(11).map_err(rd)? as u64,
                    prev_hash: hex::encode(&prev),
                    hash: hex::encode(&hash),
                };
                serde_json::to_writer(&mut *out, &line)
                    .map_err(|e| ExportError::Write(e.to_string()))?;
                out.write_all(b"\n").map_err(wr)?;
            }
        }
        n += 1;
    }
    match &mut sink {
        Sink::Csv(w) => w.flush().map_err(wr)?,
        Sink::Json(out) => out.flush().map_err(wr)?,
    }
    drop(rows);
    drop(st);
    let _ = conn.execute_batch("COMMIT");
    Ok(n)
}
