//! `strongroom redact [--tenant ID]`: operators test redaction on their own samples. Reads
//! NDJSON lines `{"id": ..., "text": "..."}` on standard input and writes, for each, one line
//! `{"id": ..., "spans": [{"start": S, "end": E, "kind": K}]}` with offsets in Unicode code
//! points (end exclusive). A line that cannot be read gets an error line naming its line
//! number (`{"line": N, "error": "..."}`) and the rest go on; the exit status is then 1.

use super::{as_operator, Cli, Failure};
use crate::ids::TenantId;
use crate::policy::redaction;
use crate::redact::{to_char_offsets, Detector};
use serde::Serialize;
use std::io::{BufRead, Write};
use std::process::ExitCode;

/// The longest line read; a longer one is an error line and is skipped.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Also apply this tenant's own patterns (`strongroom assistant redaction`).
    #[arg(long, value_name = "ID")]
    tenant: Option<String>,
}

#[derive(Serialize)]
struct Span<'a> {
    start: usize,
    end: usize,
    kind: &'a str,
}

#[derive(Serialize)]
struct Out<'a> {
    id: &'a serde_json::Value,
    spans: Vec<Span<'a>>,
}

#[derive(Serialize)]
struct Bad<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a serde_json::Value>,
    error: String,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct In {
    id: serde_json::Value,
    text: String,
}

pub fn run(cli: &Cli, args: &Args) -> Result<ExitCode, Failure> {
    let detector = match &args.tenant {
        None => Detector::default(),
        Some(t) => tenant_detector(cli, t)?,
    };
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let failed = process(&detector, &mut stdin.lock(), &mut out).map_err(|e| {
        Failure::new(
            "RED-0001",
            format!("cannot read input or write output: {e}"),
        )
    })?;
    out.flush()
        .map_err(|e| Failure::new("RED-0001", format!("cannot write output: {e}")))?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn tenant_detector(cli: &Cli, tenant: &str) -> Result<Detector, Failure> {
    let tenant = TenantId::parse(tenant)?;
    as_operator(cli, &tenant, |_, ctx| {
        Ok(redaction::read_unchecked(&ctx)?.detector()?)
    })
}

/// Every line of `input` to `output`; returns whether any line was refused.
///
/// # Errors
/// Reading or writing fails.
pub fn process(
    detector: &Detector,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
) -> std::io::Result<bool> {
    let mut failed = false;
    let mut number = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let (read, whole) = read_line(input, &mut buf)?;
        if read == 0 {
            break;
        }
        number += 1;
        if !whole {
            failed = true;
            write_line(
                output,
                &Bad {
                    line: number,
                    id: None,
                    error: format!("line {number} is longer than {MAX_LINE} bytes; split the text"),
                },
            )?;
            continue;
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<In>(line) {
            Ok(item) => {
                let found = detector.find(&item.text);
                let chars = to_char_offsets(&item.text, &found);
                let spans = found
                    .iter()
                    .zip(chars)
                    .map(|(f, (start, end))| Span {
                        start,
                        end,
                        kind: detector.label_name(f.label),
                    })
                    .collect();
                write_line(
                    output,
                    &Out {
                        id: &item.id,
                        spans,
                    },
                )?;
            }
            Err(e) => {
                failed = true;
                // The id, where the line has one, so the caller can match the error.
                let id = serde_json::from_slice::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v.get("id").cloned());
                write_line(
                    output,
                    &Bad {
                        line: number,
                        id: id.as_ref(),
                        error: format!(
                            "line {number}: expected {{\"id\": ..., \"text\": \"...\"}}: {}",
                            describe(&e)
                        ),
                    },
                )?;
            }
        }
    }
    Ok(failed)
}

/// serde_json's message, less the input position it appends (the line number says where).
fn describe(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(p) => s[..p].to_string(),
        None => s,
    }
}

/// One line into `buf`, at most [`MAX_LINE`] bytes kept: (bytes read, whether it fit).
fn read_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<(usize, bool)> {
    let mut read = 0;
    let mut whole = true;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok((read, whole));
        }
        let (take, done) = match memchr::memchr(b'\n', chunk) {
            Some(p) => (p + 1, true),
            None => (chunk.len(), false),
        };
        if whole && buf.len() + take <= MAX_LINE + 2 {
            buf.extend_from_slice(&chunk[..take]);
        } else {
            whole = false;
            buf.clear();
        }
        input.consume(take);
        read += take;
        if done {
            return Ok((read, whole));
        }
    }
}

fn write_line<T: Serialize>(out: &mut dyn Write, value: &T) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_on(input: &str) -> (Vec<serde_json::Value>, bool) {
        let mut out = Vec::new();
        let failed = process(&Detector::default(), &mut input.as_bytes(), &mut out).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, failed)
    }

    #[test]
    fn one_line_out_per_line_in_with_code_point_offsets() {
        let (out, failed) = run_on(concat!(
            "{\"id\": 1, \"text\": \"Grüße, anna@example.de\"}\n",
            "{\"id\": \"b\", \"text\": \"nothing here\"}\r\n",
            "\n",
            "{\"id\": null, \"text\": \"call +44 20 7946 0958\"}"
        ));
        assert!(!failed);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0]["id"], 1);
        assert_eq!(out[0]["spans"][0]["start"], 7);
        assert_eq!(out[0]["spans"][0]["end"], 22);
        assert_eq!(out[0]["spans"][0]["kind"], "EMAIL");
        assert_eq!(out[1]["id"], "b");
        assert_eq!(out[1]["spans"].as_array().unwrap().len(), 0);
        assert_eq!(out[2]["spans"][0]["kind"], "PHONE");
    }

    #[test]
    fn broken_lines_get_an_error_line_and_the_rest_go_on() {
        let (out, failed) = run_on(concat!(
            "{\"id\": 1, \"text\": \"a@b.io\"}\n",
            "not json\n",
            "{\"id\": 3}\n",
            "{\"id\": 4, \"text\": 5}\n",
            "{\"id\": 5, \"text\": \"x\", \"extra\": 1}\n",
            "{\"id\": 6, \"text\": \"c@d.io\"}\n",
        ));
        assert!(failed);
        assert_eq!(out.len(), 6);
        assert_eq!(out[1]["line"], 2);
        assert!(out[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("line 2: expected"));
        assert_eq!(out[2]["line"], 3);
        assert_eq!(out[2]["id"], 3);
        assert!(
            out[2]["error"].as_str().unwrap().contains("text"),
            "{}",
            out[2]
        );
        assert_eq!(out[3]["id"], 4);
        assert!(
            out[4]["error"].as_str().unwrap().contains("extra"),
            "{}",
            out[4]
        );
        assert_eq!(out[5]["id"], 6);
        assert_eq!(out[5]["spans"][0]["kind"], "EMAIL");
    }

    #[test]
    fn invalid_utf8_and_overlong_lines_are_refused_alone() {
        let mut input = b"{\"id\": 1, \"text\": \"\xff\"}\n".to_vec();
        input.extend(std::iter::repeat_n(b'a', MAX_LINE + 10));
        input.extend(b"\n{\"id\": 3, \"text\": \"e@f.io\"}\n");
        let mut out = Vec::new();
        let failed = process(&Detector::default(), &mut &input[..], &mut out).unwrap();
        assert!(failed);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["line"], 1);
        assert_eq!(lines[1]["line"], 2);
        assert!(lines[1]["error"].as_str().unwrap().contains("longer than"));
        assert_eq!(lines[2]["spans"][0]["kind"], "EMAIL");
    }
}
