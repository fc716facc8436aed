//! The pipeline's own figures (its Prometheus endpoint) and the processes' CPU time and
//! memory (from /proc).

use std::collections::HashMap;

use super::Process;

/// The `/metrics` text of every pipeline process, concatenated.
/// Each request gives up after 10 s (a paused process does not answer).
pub fn scrape(processes: &[Process]) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut text = String::new();
    for process in processes {
        if let Ok(mut response) = agent
            .get(&format!("http://{}/metrics", process.http))
            .call()
        {
            text.push_str(&response.body_mut().read_to_string().unwrap_or_default());
        }
    }
    text
}

/// etcd's own `/metrics` text (empty if it does not answer): its counters for the floor's
/// rounds and its database size for the soak.
pub fn etcd_metrics(endpoint: &str) -> String {
    ureq::get(&format!("{endpoint}/metrics"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .unwrap_or_default()
}

/// Where the time goes, from the pipeline's own histograms: per stage, the time from
/// delivery to ack and the etcd transaction times (p50 and p99 from the buckets, so to
/// bucket precision). The rest of the end-to-end time is spent in the queues and the
/// broker's delivery. `text` is the difference of two scrapes taken around the phase.
pub fn print_time_split(text: &str) {
    let text = text.to_string();
    println!(
        "where the time goes in the latency phase (pipeline histograms, to bucket precision):"
    );
    for stage in ["capture", "normalize", "wrap"] {
        let label = format!("stage=\"{stage}\"");
        let quantiles = |name: &str, extra: &str| {
            let (p50, p99) = (
                bucket_quantile(&text, name, &label, extra, 0.5),
                bucket_quantile(&text, name, &label, extra, 0.99),
            );
            if p50.is_nan() {
                return "none".to_string();
            }
            format!("p50 <= {} ms, p99 <= {} ms", ms(p50), ms(p99))
        };
        let retries = |cause: &str| {
            // Rounded, and never "-0" from a difference of zeros.
            0.0_f64
                .max(sum_samples(
                    &text,
                    "heat_pipeline_retries_total",
                    &[&label, &format!("cause=\"{cause}\"")],
                ))
                .round() as u64
        };
        println!(
            "  {stage:<9} delivery to ack {}; etcd read {}; etcd commit {}; retried on a wrong guess {}, on a conflict {}",
            quantiles("heat_pipeline_processing_seconds_bucket", ""),
            quantiles("heat_pipeline_etcd_request_seconds_bucket", "op=\"read\""),
            quantiles("heat_pipeline_etcd_request_seconds_bucket", "op=\"commit\""),
            retries("guess"),
            retries("conflict"),
        );
        let step = |name: &str| {
            let extra = format!("step=\"{name}\"");
            quantiles("heat_pipeline_step_seconds_bucket", &extra)
        };
        println!(
            "  {:<9} steps: waiting for the resource's turn {}; store {}; hand-off confirmed {}; ack {}",
            "",
            step("turn"),
            step("store"),
            step("handoff"),
            step("ack"),
        );
    }
}

/// The etcd transactions of a phase (a difference of two scrapes), per stage: commits and
/// reads, counted by the pipeline's `heat_pipeline_etcd_request_seconds_count`.
pub struct Requests {
    /// (commits, reads) of capture, normalize and wrap.
    pub stages: [(f64, f64); 3],
}

impl Requests {
    pub fn of(text: &str) -> Requests {
        let count = |stage: &str, op: &str| {
            sum_samples(
                text,
                "heat_pipeline_etcd_request_seconds_count",
                &[&format!("stage=\"{stage}\""), &format!("op=\"{op}\"")],
            )
            .max(0.0)
        };
        Requests {
            stages: ["capture", "normalize", "wrap"]
                .map(|s| (count(s, "commit"), count(s, "read"))),
        }
    }

    pub fn commits(&self) -> f64 {
        self.stages.iter().map(|(c, _)| c).sum()
    }

    pub fn reads(&self) -> f64 {
        self.stages.iter().map(|(_, r)| r).sum()
    }

    /// "1.02 (commits 0.98, reads 0.04; capture 0.33, normalize 0.33, wrap 0.36)" for
    /// `messages` messages.
    pub fn per_message(&self, messages: usize) -> String {
        let per = |v: f64| v / messages.max(1) as f64;
        let [capture, normalize, wrap] = self.stages.map(|(c, r)| per(c + r));
        format!(
            "{:.2} (commits {:.2}, reads {:.2}; capture {capture:.2}, normalize {normalize:.2}, wrap {wrap:.2})",
            per(self.commits() + self.reads()),
            per(self.commits()),
            per(self.reads()),
        )
    }
}

fn ms(seconds: f64) -> String {
    if seconds.is_finite() {
        format!("{:.1}", seconds * 1000.0)
    } else {
        "inf".into()
    }
}

/// `after - before`, sample by sample (histogram buckets are cumulative counters).
pub fn subtract_samples(after: &str, before: &str) -> String {
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let series = |line: &str| line.rsplit_once(' ').map(|(s, _)| s.to_string());
    let earlier: HashMap<String, f64> = before
        .lines()
        .filter_map(|l| Some((series(l)?, value(l)?)))
        .collect();
    after
        .lines()
        .filter_map(|l| {
            let (name, v) = (series(l)?, value(l)?);
            Some(format!(
                "{name} {}",
                v - earlier.get(&name).copied().unwrap_or(0.0)
            ))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sum of the samples of `name` that carry every one of `labels`.
pub fn sum_samples(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The upper bound of the bucket holding quantile `q`, summed over the processes' samples.
fn bucket_quantile(text: &str, name: &str, label: &str, extra: &str, q: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label) && l.contains(extra))
    {
        let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        match buckets.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, c)) => *c += count,
            None => buckets.push((bound, count)),
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |(_, c)| *c);
    buckets
        .iter()
        .find(|(_, c)| *c >= q * total && total > 0.0)
        .map_or(f64::NAN, |(b, _)| *b)
}

/// CPU time (user and system) a process has used so far, in seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        // Linux reports in USER_HZ: 100 on x86_64 and arm64.
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// The pid of a process whose command name is `name` (the local broker), if readable.
pub fn pid_named(name: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == name).then_some(pid)
        })
}

/// The process's peak resident set (VmHWM), in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}

/// The process's resident set now (VmRSS), in MiB: the per-second samples of the soak and
/// the plots, where the peak alone would hide a slow climb.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// A `kB` field of `/proc/PID/status`, in MiB (NaN once the process is gone).
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
