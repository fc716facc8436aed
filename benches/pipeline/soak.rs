//! `--soak`: `--soak-messages` creates (default 1,000,000) through the pipeline, with a
//! publisher that keeps a bounded backlog ahead of it instead of a preload, so that the run
//! measures the pipeline over time and not RabbitMQ holding a million messages. Prints a
//! row per tenth of the messages (drain rate, RSS, latency, CPU per message), which should
//! all be flat, and writes the per-second samples as `target/bench/soak.svg`. Stops by
//! itself at `--soak-minutes`, a stall or a pipeline exit, printing what it has.
//!
//! etcd is kept as a production etcd would be over a long run: resources whose /state is
//! long written are deleted, a chunk (a hundredth of the messages) at a time, and the store
//! is compacted after the chunks that were waiting; without that a million resources' records and history would
//! pass a private etcd's 2 GiB quota, and the run would measure etcd's growth.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, CompactionOptions, DeleteOptions, GetOptions};
use heat_pipeline::amqp::Topology;
use heat_pipeline::keys::{Family, Keyspace};
use heat_pipeline::stages::StageName;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::metrics::{cpu_seconds, etcd_metrics, sum_samples};
use super::plot;
use super::processes::{spawn_pipeline, stop};
use super::publish::publish;
use super::rounds::{load, Rig};
use super::series::{percentiles, Sample, Sampler};
use super::watcher::{Published, StateWatcher};
use super::{workload, STALL};

/// Messages per confirmed publish batch.
const BATCH: usize = 1000;

/// Where the soak's plot goes.
const SVG: &str = "target/bench/soak.svg";

/// One row's running figures.
#[derive(Default)]
struct Row {
    start: f64,
    rss_max: f64,
    latencies: Vec<f64>,
    cpu: f64,
}

pub async fn run(rig: &Rig<'_>) {
    let args = rig.args;
    let total = args.soak_messages.max(1);
    let row_size = (total / 10).max(1);
    let chunk = (row_size / 10).max(1);
    let name = format!("bench-{}-soak", std::process::id());
    let prefix = format!("/{name}");
    let topology = Topology::new(name.clone(), 20);
    topology.declare(rig.channel).await.expect("declare");
    let watcher = StateWatcher::start(rig.etcd, &prefix).await;
    let env = [
        ("AMQP_URL", rig.amqp_url),
        ("ETCD_ENDPOINTS", rig.etcd_endpoint),
        ("PIPELINE_NAME", name.as_str()),
        ("ETCD_KEY_PREFIX", prefix.as_str()),
        ("RUST_LOG", "warn"),
        ("HTTP_ADDR", "127.0.0.1:0"),
    ];
    let deadline = Duration::from_secs(args.soak_minutes * 60);
    println!(
        "== soak: {total} creates, at most {} in flight (published, no /state yet), refilled in confirmed batches of {BATCH}; a row per {row_size}; stops after {} min",
        args.soak_backlog, args.soak_minutes
    );
    println!(
        "{:<4} {:>9} {:>9} {:>8} {:>14} {:>8} {:>8} {:>8} {:>8} {:>8}  load (1/5/15 min)",
        "row",
        "messages",
        "at s",
        "msg/s",
        "RSS MiB end/max",
        "p50 s",
        "p99 s",
        "CPU us",
        "ready",
        "etcd MiB"
    );
    let origin = Instant::now();
    let mut processes = spawn_pipeline(args, &env);
    let pids: Vec<u32> = processes.iter().map(|p| p.child.id()).collect();
    let done = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn(publisher(
        rig.channel.clone(),
        topology.clone(),
        rig.template.to_string(),
        watcher.published.clone(),
        done.clone(),
        (total, chunk, args.soak_backlog),
    ));
    let (cleaner, cleaning) = cleaner(
        rig.etcd.clone(),
        Keyspace::new(&prefix, "v2.0"),
        rig.private_etcd,
    );
    let cpu = || pids.iter().map(|&pid| cpu_seconds(pid)).sum::<f64>();

    let mut sampler = Sampler::new(origin, 0, pids.clone());
    let mut samples: Vec<Sample> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let (mut rows, mut row) = (0, Row::default());
    let (mut cleaned, mut last_progress) = (0, Instant::now());
    let stopped = loop {
        tick.tick().await;
        let mut progress = watcher.progress().await;
        let sample = sampler.sample(&mut progress);
        row.latencies.append(&mut progress.latencies);
        row.rss_max = row.rss_max.max(sample.rss);
        let before = samples.last().map_or(0, |s: &Sample| s.done);
        if sample.done > before {
            last_progress = Instant::now();
        }
        samples.push(sample);
        done.store(sample.done, Ordering::Relaxed);
        while rows < 10 && sample.done >= (rows + 1) * row_size {
            rows += 1;
            let end = crossing(&samples, rows * row_size);
            let ready = ready(rig.channel, &topology).await;
            let (p50, p99) = percentiles(&mut row.latencies);
            let cpu_now = cpu();
            println!(
                "{:<4} {:>9} {:>9.1} {:>8.0} {:>6.1} / {:<6.1} {:>8.1} {:>8.1} {:>8.0} {:>8} {:>8.0}  {}",
                rows,
                rows * row_size,
                end,
                row_size as f64 / (end - row.start),
                sample.rss,
                row.rss_max,
                p50 / 1000.0,
                p99 / 1000.0,
                (cpu_now - row.cpu) * 1e6 / row_size as f64,
                ready,
                etcd_db_mib(rig.etcd_endpoint),
                load()
            );
            row = Row {
                start: end,
                rss_max: sample.rss,
                latencies: Vec::new(),
                cpu: cpu_now,
            };
            watcher.reset_latencies();
        }
        // Resources two chunks behind the writes are done with: their records go.
        while sample.done >= (cleaned + 3) * chunk {
            watcher.forget(&format!("s{cleaned}"));
            let _ = cleaner.send(cleaned);
            cleaned += 1;
        }
        if sample.done >= total {
            break None;
        }
        if origin.elapsed() > deadline {
            break Some(format!("the deadline ({} min)", args.soak_minutes));
        }
        if last_progress.elapsed() > STALL {
            break Some(format!("no /state write for {} s", STALL.as_secs()));
        }
        if let Some(p) = processes
            .iter_mut()
            .find_map(|p| (!matches!(p.child.try_wait(), Ok(None))).then_some(&p.label))
        {
            break Some(format!("{p} exited"));
        }
    };
    publisher.abort();
    let last = samples.last().copied();
    if let Some(why) = &stopped {
        println!(
            "stopped at {why}: {} of {total} messages done",
            last.map_or(0, |s| s.done)
        );
    }
    stop(&mut processes);
    // What the cleaner has not done yet goes with the prefix below.
    drop(cleaner);
    cleaning.abort();
    topology.delete(rig.channel).await;
    let mut kv = rig.etcd.kv_client();
    // What the cleaning left: the records of the last chunks only, if it kept up.
    let options = GetOptions::new().with_prefix().with_count_only();
    if let Ok(r) = kv.get(prefix.as_str(), Some(options)).await {
        println!("etcd keys left under the soak's prefix: {}", r.count());
    }
    let options = DeleteOptions::new().with_prefix();
    let _ = kv.delete(prefix.as_str(), Some(options)).await;
    summary(&samples, row_size, origin);
    let title = format!(
        "heat-pipeline soak: {} creates, {} (at most {} in flight)",
        last.map_or(0, |s| s.done),
        super::layout(args),
        args.soak_backlog
    );
    let line = plot::Line {
        label: "pipeline",
        color: plot::PIPELINE,
        samples: &samples,
    };
    match plot::write(SVG, &title, plot::Axis::Minutes, &[line]) {
        Ok(()) => println!("plot: {SVG}"),
        Err(e) => println!("warning: no plot: {e}"),
    }
}

/// Publishes `total` creates, ids `s<chunk>-<n>`, in confirmed batches, while fewer than
/// `backlog` are in flight (published, no /state yet). The bench's sampler updates `done`
/// once a second, so the backlog dips by at most a second's drain before it is refilled.
async fn publisher(
    channel: Channel,
    topology: Topology,
    template: String,
    published: Published,
    done: Arc<AtomicUsize>,
    (total, chunk, backlog): (usize, usize, usize),
) {
    let batch = BATCH.min(chunk).min(backlog.max(1));
    let mut next = 0;
    while next < total {
        if next.saturating_sub(done.load(Ordering::Relaxed)) + batch > backlog {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let c = next / chunk;
        let end = (next + batch).min((c + 1) * chunk).min(total);
        let messages = workload::create(&template, &format!("s{c}"), next..end);
        publish(&published, &channel, &topology, &messages, None).await;
        next = end;
    }
}

/// A task deleting the records of the chunks it is sent (every family the pipeline writes),
/// then compacting once for all the chunks that were waiting: a compaction takes a while,
/// and one per chunk fell behind when the chunks were small (`--soak-messages 100000`).
fn cleaner(
    etcd: Client,
    keys: Keyspace,
    compact: bool,
) -> (mpsc::UnboundedSender<usize>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
    let task = tokio::spawn(async move {
        let mut kv = etcd.kv_client();
        while let Some(first) = rx.recv().await {
            let mut chunks = vec![first];
            while let Ok(chunk) = rx.try_recv() {
                chunks.push(chunk);
            }
            for chunk in chunks {
                for family in Family::ALL {
                    let key = keys.key(family, "ports", &format!("s{chunk}-"));
                    let options = DeleteOptions::new().with_prefix();
                    let _ = kv.delete(key.as_str(), Some(options)).await;
                }
            }
            if compact {
                // As `etcd::compact`, but a failure (etcd stopping under a failed run) only
                // skips this compaction.
                if let Ok(Some(header)) = kv.get("/", None).await.map(|r| r.header().cloned()) {
                    let options = CompactionOptions::new().with_physical();
                    let _ = kv.compact(header.revision(), Some(options)).await;
                }
            }
        }
    });
    (tx, task)
}

/// When the writes reached `count`, interpolated between the samples around it.
fn crossing(samples: &[Sample], count: usize) -> f64 {
    let i = samples.iter().position(|s| s.done >= count).unwrap_or(0);
    match (i.checked_sub(1).map(|j| samples[j]), samples[i]) {
        (Some(a), b) if b.done > a.done => {
            a.t + (count - a.done) as f64 / (b.done - a.done) as f64 * (b.t - a.t)
        }
        (_, b) => b.t,
    }
}

/// Messages ready in the capture queue (what the backlog mostly is).
async fn ready(channel: &Channel, topology: &Topology) -> String {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = topology.queue(StageName::Capture);
    match channel
        .queue_declare(queue.as_str().into(), options, FieldTable::default())
        .await
    {
        Ok(q) => q.message_count().to_string(),
        Err(_) => "?".into(),
    }
}

/// The size of etcd's database file (its `/metrics`), in MiB.
fn etcd_db_mib(endpoint: &str) -> f64 {
    sum_samples(
        &etcd_metrics(endpoint),
        "etcd_mvcc_db_total_size_in_bytes",
        &[],
    ) / (1 << 20) as f64
}

/// First row against last, and the whole run.
fn summary(samples: &[Sample], row_size: usize, origin: Instant) {
    let Some(last) = samples.last() else { return };
    // From the end of the first row: before it the process is still starting and filling.
    let rss: Vec<f64> = samples
        .iter()
        .filter(|s| s.done >= row_size)
        .map(|s| s.rss)
        .filter(|r| r.is_finite())
        .collect();
    let min = rss.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rss.iter().copied().fold(0.0, f64::max);
    println!(
        "whole run: {} messages in {:.0} s = {:.0} msg/s; RSS after the first row between {min:.1} and {max:.1} MiB (per-second samples); the run took {:.0} s with the stop",
        last.done,
        last.t,
        last.done as f64 / last.t,
        origin.elapsed().as_secs_f64()
    );
    if last.done >= 2 * row_size {
        let first = crossing(samples, row_size);
        let rows = last.done / row_size;
        let rate = |a: f64, b: f64| row_size as f64 / (b - a);
        let (a, b) = (
            crossing(samples, (rows - 1) * row_size),
            crossing(samples, rows * row_size),
        );
        println!(
            "first row {:.0} msg/s, last full row {:.0} msg/s",
            rate(0.0, first),
            rate(a, b)
        );
    }
}
