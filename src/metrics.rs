//! The process's counters, rendered in the Prometheus text format (version 0.0.4) for
//! `/metrics`.
//!
//! They describe this process, the way its threads do, so they are one process-wide set
//! ([`global`]): the writer threads, the sign-in path and the model endpoints count into it
//! without a handle being passed through every layer between them and the server. Values
//! that already live elsewhere (open tenant files, breaker states, queue lengths) are read
//! at scrape time instead of being mirrored here.
//!
//! Labels never carry a tenant's name, a person, a path with ids in it or a model id a
//! caller typed: routes are the router's templates, endpoints the configured names, and
//! tenant ids appear only where the configuration turns them on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

/// Upper bounds (seconds) of request latency buckets: from a fast API call to a long
/// streamed answer.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 180.0,
];

/// Upper bounds (seconds) of a group commit: an fsync on a fast disk to a stalled one.
pub const COMMIT_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A cumulative histogram: counts per bucket (the last one is `+Inf`) and the sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| format!("{b}"));
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
    }
}

fn braces(labels: &str) -> String {
    if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    }
}

/// A label value as the text format wants it: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Renders `name="value"` pairs, in the order given.
pub fn labels(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape(v));
    }
    out
}

/// Series of one metric, keyed by their rendered labels.
#[derive(Debug)]
pub struct Family<T> {
    series: RwLock<BTreeMap<String, Arc<T>>>,
    make: fn() -> T,
}

impl<T> Family<T> {
    const fn new(make: fn() -> T) -> Self {
        Self {
            series: RwLock::new(BTreeMap::new()),
            make,
        }
    }

    /// The series of `labels` (rendered by [`labels`]), made on first use.
    pub fn get(&self, labels: &str) -> Arc<T> {
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(labels)
        {
            return s.clone();
        }
        self.series
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(labels.to_string())
            .or_insert_with(|| Arc::new((self.make)()))
            .clone()
    }

    fn each(&self, mut f: impl FnMut(&str, &T)) {
        for (k, v) in self
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            f(k, v);
        }
    }
}

/// One route, method and status: how many and how long.
#[derive(Debug)]
pub struct Requests {
    pub latency: Histogram,
}

/// What the process counts.
#[derive(Debug)]
pub struct Metrics {
    /// By `route`, `method` and `status`.
    pub requests: Family<Requests>,
    /// Calls refused with 429, by `reason`.
    pub throttled: Family<AtomicU64>,
    /// Failed calls to model endpoints, by `endpoint` and `error`.
    pub upstream_errors: Family<AtomicU64>,
    /// Calls to model endpoints, by `endpoint`.
    pub upstream_calls: Family<AtomicU64>,
    /// Gateway calls, by `outcome` (and `tenant` where the configuration allows).
    pub gateway_calls: Family<AtomicU64>,
    /// Sign-ins, by `method` (`password`, `sso`) and `outcome`.
    pub sign_ins: Family<AtomicU64>,
    /// Jobs queued to the writers of every file, not yet committed.
    pub audit_queue: AtomicI64,
    /// Group commits, fsync included.
    pub audit_commit: Histogram,
    /// Audit entries committed.
    pub audit_entries: AtomicU64,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: Family::new(|| Requests {
        latency: Histogram::new(LATENCY_BUCKETS),
    }),
    throttled: Family::new(AtomicU64::default),
    upstream_errors: Family::new(AtomicU64::default),
    upstream_calls: Family::new(AtomicU64::default),
    gateway_calls: Family::new(AtomicU64::default),
    sign_ins: Family::new(AtomicU64::default),
    audit_queue: AtomicI64::new(0),
    audit_commit: Histogram::new(COMMIT_BUCKETS),
    audit_entries: AtomicU64::new(0),
});

/// The process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Adds one to the series of `labels` in `family`.
pub fn inc(family: &Family<AtomicU64>, pairs: &[(&str, &str)]) {
    family.get(&labels(pairs)).fetch_add(1, Ordering::Relaxed);
}

/// Values read at scrape time from the parts that own them.
#[derive(Debug, Default)]
pub struct Live {
    pub tenant_files_open: u64,
    /// Per configured endpoint: its name, calls in progress, calls waiting for a slot, and
    /// the state of each URL's breaker (0 closed, 1 open, 2 half open).
    pub endpoints: Vec<EndpointState>,
    pub uptime: Duration,
}

#[derive(Debug, Default, Clone)]
pub struct EndpointState {
    pub name: String,
    pub in_flight: u64,
    pub waiting: u64,
    pub breakers: Vec<u8>,
}

/// Reads one gauge of an endpoint's state.
type EndpointGauge = fn(&EndpointState) -> u64;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counters(out: &mut String, name: &str, help: &str, family: &Family<AtomicU64>) {
    header(out, name, "counter", help);
    family.each(|labels, v| {
        let _ = writeln!(
            out,
            "{name}{} {}",
            braces(labels),
            v.load(Ordering::Relaxed)
        );
    });
}

impl Metrics {
    /// The exposition: every metric with its help and type, then its series.
    pub fn render(&self, live: &Live) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let m = "strongroom_http_requests_total";
        header(
            &mut out,
            m,
            "counter",
            "HTTP requests answered, by route template, method and status.",
        );
        self.requests.each(|labels, r| {
            let n: u64 = r
                .latency
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum();
            let _ = writeln!(out, "{m}{{{labels}}} {n}");
        });
        let m = "strongroom_http_request_duration_seconds";
        header(
            &mut out,
            m,
            "histogram",
            "Time from a request's arrival to its response head, by route template, method and status.",
        );
        self.requests
            .each(|labels, r| r.latency.render(&mut out, m, labels));
        counters(
            &mut out,
            "strongroom_throttled_total",
            "Requests refused with 429, by reason.",
            &self.throttled,
        );
        counters(
            &mut out,
            "strongroom_gateway_calls_total",
            "Calls to the gateway's /v1 APIs that reached a model or were refused by policy, by outcome.",
            &self.gateway_calls,
        );
        counters(
            &mut out,
            "strongroom_upstream_calls_total",
            "Calls to model endpoints, by endpoint.",
            &self.upstream_calls,
        );
        counters(
            &mut out,
            "strongroom_upstream_errors_total",
            "Failed calls to model endpoints, by endpoint and error.",
            &self.upstream_errors,
        );
        let gauges: [(&str, &str, EndpointGauge); 2] = [
            (
                "strongroom_upstream_in_flight",
                "Calls in progress to a model endpoint.",
                |e| e.in_flight,
            ),
            (
                "strongroom_upstream_waiting",
                "Calls waiting for a free slot of a model endpoint.",
                |e| e.waiting,
            ),
        ];
        for (name, help, value) in gauges {
            header(&mut out, name, "gauge", help);
            for e in &live.endpoints {
                let _ = writeln!(
                    out,
                    "{name}{{{}}} {}",
                    labels(&[("endpoint", &e.name)]),
                    value(e)
                );
            }
        }
        let m = "strongroom_upstream_circuit_state";
        header(
            &mut out,
            m,
            "gauge",
            "Breaker of each URL of a model endpoint: 0 closed, 1 open (not called), 2 half open (one trial call allowed).",
        );
        for e in &live.endpoints {
            for (i, s) in e.breakers.iter().enumerate() {
                let url = i.to_string();
                let _ = writeln!(
                    out,
                    "{m}{{{}}} {s}",
                    labels(&[("endpoint", &e.name), ("url", &url)])
                );
            }
        }
        let m = "strongroom_audit_queue_depth";
        header(
            &mut out,
            m,
            "gauge",
            "Jobs queued to the writers of all files and not yet committed.",
        );
        let _ = writeln!(
            out,
            "{m} {}",
            self.audit_queue.load(Ordering::Relaxed).max(0)
        );
        let m = "strongroom_audit_commit_duration_seconds";
        header(
            &mut out,
            m,
            "histogram",
            "Group commits of the writers, fsync included.",
        );
        self.audit_commit.render(&mut out, m, "");
        let m = "strongroom_audit_entries_total";
        header(&mut out, m, "counter", "Audit entries committed.");
        let _ = writeln!(out, "{m} {}", self.audit_entries.load(Ordering::Relaxed));
        let m = "strongroom_tenant_files_open";
        header(&mut out, m, "gauge", "Tenant files open in this process.");
        let _ = writeln!(out, "{m} {}", live.tenant_files_open);
        counters(
            &mut out,
            "strongroom_sign_ins_total",
            "Sign-ins, by method (password, sso) and outcome.",
            &self.sign_ins,
        );
        let m = "strongroom_uptime_seconds";
        header(&mut out, m, "gauge", "Seconds since the server started.");
        let _ = writeln!(out, "{m} {}", live.uptime.as_secs_f64());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_cumulative_and_counts_every_observation() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(3));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"0.001\"} 1\nx_bucket{a=\"b\",le=\"0.01\"} 3\nx_bucket{a=\"b\",le=\"+Inf\"} 4\nx_sum{a=\"b\"} 3.0105\nx_count{a=\"b\"} 4\n"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            labels(&[("route", "/a\"b\\c\nd"), ("s", "2")]),
            "route=\"/a\\\"b\\\\c\\nd\",s=\"2\""
        );
    }

    #[test]
    fn families_keep_one_series_per_label_set() {
        let f: Family<AtomicU64> = Family::new(AtomicU64::default);
        inc(&f, &[("reason", "rate")]);
        inc(&f, &[("reason", "rate")]);
        inc(&f, &[("reason", "tokens")]);
        let mut out = String::new();
        counters(&mut out, "t_total", "help", &f);
        assert!(out.contains("t_total{reason=\"rate\"} 2\n"), "{out}");
        assert!(out.contains("t_total{reason=\"tokens\"} 1\n"), "{out}");
    }
}
