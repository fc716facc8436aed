//! Per-second samples of a run, for the plots (`plot.rs`) and the soak's rows: messages
//! done (distinct /state writes seen by the watcher, whose differences are the drain rate),
//! the end-to-end latency percentiles of that second's writes and the process's RSS.
//! Rates and percentiles over whole phases hide a slow drift; a line per second shows it.

use std::future::Future;
use std::time::{Duration, Instant};

use super::metrics::rss_mib;
use super::watcher::{Progress, StateWatcher};

/// One second of a run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the run's origin (the bench's start), so phases line up on one axis.
    pub t: f64,
    /// /state writes so far in this series.
    pub done: usize,
    /// Publish-to-/state latency of the writes seen since the previous sample, in ms (NaN
    /// when there were none).
    pub p50: f64,
    pub p99: f64,
    /// RSS of the process(es) under test, in MiB.
    pub rss: f64,
}

/// Turns the watcher's progress into samples: one per call of [`Sampler::sample`].
pub struct Sampler {
    origin: Instant,
    base: usize,
    pids: Vec<u32>,
}

impl Sampler {
    /// `base`: the watcher's count when the series starts (its writes are not this
    /// series'); `pids`: the processes whose RSS is summed.
    pub fn new(origin: Instant, base: usize, pids: Vec<u32>) -> Sampler {
        Sampler { origin, base, pids }
    }

    /// A sample from `progress` (taken just now); its latencies are consumed.
    pub fn sample(&mut self, progress: &mut Progress) -> Sample {
        let t = self.origin.elapsed().as_secs_f64();
        let done = progress.written.saturating_sub(self.base);
        let (p50, p99) = percentiles(&mut progress.latencies);
        let rss = self.pids.iter().map(|&pid| rss_mib(pid)).sum();
        Sample {
            t,
            done,
            p50,
            p99,
            rss,
        }
    }
}

/// p50 and p99 of `values` (sorted in place), NaN when empty.
pub fn percentiles(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((values.len() as f64 - 1.0) * q).round() as usize;
        values.get(i).copied().unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99))
}

/// Runs `work` while sampling every second; returns its output and the samples.
pub async fn sample_while<F: Future>(
    watcher: &StateWatcher,
    mut sampler: Sampler,
    work: F,
) -> (F::Output, Vec<Sample>) {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut samples = Vec::new();
    loop {
        tokio::select! {
            output = &mut work => {
                samples.push(sampler.sample(&mut watcher.progress().await));
                return (output, samples);
            }
            _ = tick.tick() => samples.push(sampler.sample(&mut watcher.progress().await)),
        }
    }
}
