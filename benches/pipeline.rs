//! The benchmark behind `scripts/bench.sh`: drain throughput, end-to-end latency under a
//! steady offered load, peak RSS of each pipeline process, and the raw etcd put rate on the
//! same machine for comparison. It prints figures; it asserts nothing about time.
//!
//! `cargo bench --bench pipeline -- --help` lists the knobs. Services come from AMQP_URL and
//! ETCD_ENDPOINTS; the pipeline is the release binary, started as child processes.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use etcd_client::{Client, CompactionOptions, DeleteOptions, EventType, WatchOptions};
use heat_pipeline::amqp::{self, Topology};
use heat_pipeline::ops::publish::input_properties;
use heat_pipeline::stages::StageName;
use lapin::options::{BasicPublishOptions, ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::Channel;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Parser)]
#[command(about = "heat-pipeline benchmark (run through scripts/bench.sh)")]
struct Args {
    /// Results preloaded before the pipeline starts (drain phase).
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Processes per stage; 0 runs one `run all` process.
    #[arg(long, default_value_t = 0)]
    processes: usize,
    /// --concurrency of each stage (default: the binary's default, so that the headline
    /// figure is what users run), and of the raw etcd put test.
    #[arg(long)]
    concurrency: Option<u16>,
    /// Offered load of the latency phase, in messages per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Length of the latency phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The pipeline binary.
    #[arg(long, default_value = "target/release/heat-pipeline")]
    binary: String,
    /// Use the etcd of ETCD_ENDPOINTS instead of a fresh private one. An etcd that has been
    /// written to a lot without compaction is much slower, so figures from a shared etcd
    /// say more about its history than about the pipeline.
    #[arg(long)]
    shared_etcd: bool,
    /// The broker's processes whose CPU time is counted (a cluster's nodes, comma-separated);
    /// by default the local `beam.smp`.
    #[arg(long, value_delimiter = ',')]
    broker_pids: Vec<u32>,
    /// etcd's processes whose CPU time is counted with --shared-etcd (a cluster's members).
    #[arg(long, value_delimiter = ',')]
    etcd_pids: Vec<u32>,
    /// Passed by `cargo bench`; without it (under `cargo test`) the benchmark does nothing.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !args.bench {
        println!("benchmark skipped: run scripts/bench.sh");
        return;
    }
    let amqp_url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let private_etcd = (!args.shared_etcd).then(PrivateEtcd::start);
    let etcd_endpoints = match &private_etcd {
        Some(etcd) => etcd.endpoint.clone(),
        None => std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| "http://127.0.0.1:2379".into()),
    };
    if private_etcd.is_some() {
        wait_for_etcd(&etcd_endpoints).await;
    }
    let name = format!("bench-{}", std::process::id());
    let prefix = format!("/{name}");
    let topology = Topology::new(name.clone(), 20);
    let etcd = Client::connect(etcd_endpoints.split(',').collect::<Vec<_>>(), None)
        .await
        .expect("etcd");
    let (connection, _node) = amqp::connect(&amqp_url.as_str().into(), "bench")
        .await
        .expect("broker");
    let channel = amqp::confirm_channel(&connection).await.unwrap();
    topology.declare(&channel).await.unwrap();
    let template = std::fs::read_to_string("examples/heat_result.port.json").unwrap();

    println!(
        "heat-pipeline benchmark: {} messages, {}, concurrency {}, {} etcd",
        args.messages,
        layout(&args),
        concurrency(&args),
        if args.shared_etcd {
            "the shared"
        } else {
            "a fresh private"
        }
    );

    let put_rate = raw_put_rate(
        &etcd,
        &prefix,
        usize::from(concurrency(&args)),
        Duration::from_secs(5),
    )
    .await;
    println!(
        "raw etcd put rate ({} concurrent, 1.5 KiB values): {put_rate:.0} puts/s",
        concurrency(&args)
    );
    if private_etcd.is_some() {
        // Drop the put test's history, so the pipeline starts on a small store.
        compact(&etcd).await;
    }

    // Drain: preload, then start the pipeline and time until every /state is written.
    let watcher = StateWatcher::start(&etcd, &prefix).await;
    let started = Instant::now();
    publish_batch(
        &watcher.published,
        &channel,
        &topology,
        &template,
        "d",
        0..args.messages,
        None,
    )
    .await;
    println!(
        "preloaded {} messages in {:.1} s",
        args.messages,
        started.elapsed().as_secs_f64()
    );
    let env = [
        ("AMQP_URL", amqp_url.as_str()),
        ("ETCD_ENDPOINTS", etcd_endpoints.as_str()),
        ("PIPELINE_NAME", name.as_str()),
        ("ETCD_KEY_PREFIX", prefix.as_str()),
        ("RUST_LOG", "warn"),
        ("HTTP_ADDR", "127.0.0.1:0"),
    ];
    // CPU time so far of the broker and etcd (NaN where unknown: a remote or shared one).
    let etcd_pids = match &private_etcd {
        Some(etcd) => vec![etcd.child.id()],
        None => args.etcd_pids.clone(),
    };
    let broker_pids = match args.broker_pids.as_slice() {
        [] => pid_named("beam.smp").into_iter().collect(),
        pids => pids.to_vec(),
    };
    let cpu_of = |pids: &[u32]| match pids {
        [] => f64::NAN,
        pids => pids.iter().map(|&pid| cpu_seconds(pid)).sum(),
    };
    let (broker_before, etcd_before) = (cpu_of(&broker_pids), cpu_of(&etcd_pids));
    let started = Instant::now();
    let mut processes = spawn_pipeline(&args, &env);
    watcher.wait_for_count(args.messages).await;
    let drain = started.elapsed().as_secs_f64();
    let drain_rate = args.messages as f64 / drain;
    println!(
        "drain: {} messages through all three stages in {drain:.2} s = {drain_rate:.0} msg/s",
        args.messages
    );
    // CPU time per message is steadier than a rate on a shared machine: it says what each
    // process costs, whatever else the cores were doing.
    let pipeline_cpu: f64 = processes.iter().map(|p| cpu_seconds(p.child.id())).sum();
    let broker_cpu = cpu_of(&broker_pids) - broker_before;
    let etcd_cpu = cpu_of(&etcd_pids) - etcd_before;
    let per_message = |seconds: f64| {
        if seconds.is_nan() {
            "unknown".to_string()
        } else {
            format!("{:.0} us", seconds * 1e6 / args.messages as f64)
        }
    };
    println!(
        "CPU per message in the drain: pipeline {}, RabbitMQ {}, etcd {} ({} cores busy on average)",
        per_message(pipeline_cpu),
        per_message(broker_cpu),
        per_message(etcd_cpu),
        format_args!("{:.2}", (pipeline_cpu + broker_cpu + etcd_cpu) / drain),
    );
    println!(
        "ratio to the raw etcd put rate / 3 (each message is three writes): {:.2}",
        drain_rate / (put_rate / 3.0)
    );

    // Latency under a steady offered load, on a store compacted as a production etcd's
    // periodic compaction keeps it (docs/SCALING.md).
    if private_etcd.is_some() {
        compact(&etcd).await;
    }
    watcher.reset_latencies();
    let before_latency = scrape(&processes);
    // How well the stages batched their etcd requests while draining.
    let requests = |op: &str| {
        sum_samples(
            &before_latency,
            "heat_pipeline_etcd_request_seconds_count",
            &[&format!("op=\"{op}\"")],
        )
    };
    println!(
        "etcd transactions in the drain: {:.0} commits and {:.0} reads for {} messages x 3 stages",
        requests("commit"),
        requests("read").max(0.0),
        args.messages
    );
    let offered = args.rate as usize * args.seconds as usize;
    publish_batch(
        &watcher.published,
        &channel,
        &topology,
        &template,
        "l",
        0..offered,
        Some(args.rate),
    )
    .await;
    watcher.wait_for_count(args.messages + offered).await;
    let (p50, p99, max) = watcher.latency_percentiles().await;
    println!(
        "latency at {} msg/s offered for {} s: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms",
        args.rate, args.seconds
    );

    print_time_split(&before_latency, &processes);
    for process in &processes {
        println!(
            "peak RSS {} (pid {}): {:.1} MiB",
            process.label,
            process.child.id(),
            peak_rss_mib(process.child.id())
        );
    }
    for process in &processes {
        let _ = Command::new("kill")
            .args(["-TERM", &process.child.id().to_string()])
            .status();
    }
    for process in &mut processes {
        let status = process.child.wait().unwrap();
        if !status.success() {
            println!("warning: {} exited with {status}", process.label);
        }
    }

    for stage in StageName::ALL {
        for queue in [topology.queue(stage), topology.dead_queue(stage)] {
            let _ = channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
        }
    }
    for exchange in [topology.exchange().to_string(), topology.dead_exchange()] {
        let _ = channel
            .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = etcd
        .kv_client()
        .delete(prefix.as_str(), Some(DeleteOptions::new().with_prefix()))
        .await;
}

fn layout(args: &Args) -> String {
    if args.processes == 0 {
        "one `run all` process".into()
    } else {
        format!("{} process(es) per stage", args.processes)
    }
}

/// `--concurrency` as given, or the binary's default.
fn concurrency(args: &Args) -> u16 {
    args.concurrency
        .unwrap_or(heat_pipeline::runner::DEFAULT_CONCURRENCY)
}

/// A pipeline process of the benchmark, with the address of its metrics endpoint.
struct Process {
    label: String,
    http: String,
    child: Child,
}

fn spawn_pipeline(args: &Args, env: &[(&str, &str)]) -> Vec<Process> {
    let spawn = |stage: &str| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = format!("127.0.0.1:{port}");
        let child = Command::new(&args.binary)
            .args([
                "run",
                stage,
                "--concurrency",
                &concurrency(args).to_string(),
            ])
            .args(["--http-addr", &http])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the pipeline (cargo build --release first)");
        Process {
            label: stage.to_string(),
            http,
            child,
        }
    };
    if args.processes == 0 {
        vec![spawn("all")]
    } else {
        let mut all = Vec::new();
        for stage in ["capture", "normalize", "wrap"] {
            for _ in 0..args.processes {
                all.push(spawn(stage));
            }
        }
        all
    }
}

/// Where the time goes, from the pipeline's own histograms: per stage, the time from
/// delivery to ack and the etcd transaction times (p50 and p99 from the buckets, so to
/// bucket precision). The rest of the end-to-end time is spent in the queues and the
/// broker's delivery.
fn scrape(processes: &[Process]) -> String {
    let mut text = String::new();
    for process in processes {
        if let Ok(mut response) = ureq::get(&format!("http://{}/metrics", process.http)).call() {
            text.push_str(&response.body_mut().read_to_string().unwrap_or_default());
        }
    }
    text
}

/// Prints the split of the latency phase: the difference of two scrapes, `before` taken
/// when the phase started.
fn print_time_split(before: &str, processes: &[Process]) {
    let after = scrape(processes);
    let text = subtract_samples(&after, before);
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
fn subtract_samples(after: &str, before: &str) -> String {
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
fn sum_samples(text: &str, name: &str, labels: &[&str]) -> f64 {
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

/// Publishes results for resources `<tag>-<n>`, confirms awaited in windows of 500; with
/// `rate`, paced to that many per second.
async fn publish_batch(
    published: &Published,
    channel: &Channel,
    topology: &Topology,
    template: &str,
    tag: &str,
    range: std::ops::Range<usize>,
    rate: Option<u64>,
) {
    let started = Instant::now();
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    for (i, n) in range.enumerate() {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let id = format!("{tag}-{n}");
        let body = template.replace("23464cbc-d910-430a-93f7-3776ea07f992", &id);
        published.lock().unwrap().insert(id, now_ms());
        channel
            .basic_publish(
                topology.exchange().into(),
                StageName::Capture.routing_key().into(),
                options,
                body.as_bytes(),
                input_properties().with_delivery_mode(2),
            )
            .await
            .expect("publish");
        if i % 500 == 499 && rate.is_none() {
            channel.wait_for_confirms().await.expect("confirms");
        }
    }
    channel.wait_for_confirms().await.expect("confirms");
}

/// Puts as fast as `concurrency` tasks can for `length`.
async fn raw_put_rate(etcd: &Client, prefix: &str, concurrency: usize, length: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let value = vec![b'x'; 1536];
    let deadline = Instant::now() + length;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut kv = etcd.kv_client();
        let (done, value, key) = (
            done.clone(),
            value.clone(),
            format!("{prefix}/raw/{worker}"),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                kv.put(key.as_str(), value.as_slice(), None)
                    .await
                    .expect("put");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / length.as_secs_f64()
}

/// When each resource's input was published (ms since the epoch), by resource id.
type Published = Arc<std::sync::Mutex<HashMap<String, f64>>>;

/// Watches `/state/` under the prefix: counts new records, and for each one the time from
/// its input's publish to the watch event (the /state commit plus a local watch delivery).
struct StateWatcher {
    queries: mpsc::UnboundedSender<Query>,
    published: Published,
}

enum Query {
    WaitFor(usize, oneshot::Sender<()>),
    Reset,
    Percentiles(oneshot::Sender<(f64, f64, f64)>),
}

impl StateWatcher {
    async fn start(etcd: &Client, prefix: &str) -> StateWatcher {
        let key = format!("{prefix}/state/");
        let mut stream = etcd
            .watch_client()
            .watch(key.as_str(), Some(WatchOptions::new().with_prefix()))
            .await
            .expect("watch");
        let published: Published = Arc::default();
        let times = published.clone();
        let (tx, mut rx) = mpsc::unbounded_channel::<Query>();
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut latencies: Vec<f64> = Vec::new();
            let mut waiting: Vec<(usize, oneshot::Sender<()>)> = Vec::new();
            loop {
                tokio::select! {
                    message = stream.message() => {
                        let Ok(Some(response)) = message else { break };
                        let now = now_ms();
                        for event in response.events() {
                            let Some(kv) = event.kv().filter(|_| event.event_type() == EventType::Put) else { continue };
                            let id = kv.key_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_string();
                            if let Some(at) = times.lock().unwrap().remove(&id) {
                                latencies.push(now - at);
                            }
                            seen.insert(id);
                        }
                    }
                    query = rx.recv() => match query {
                        None => break,
                        Some(Query::WaitFor(count, reply)) => waiting.push((count, reply)),
                        Some(Query::Reset) => latencies.clear(),
                        Some(Query::Percentiles(reply)) => {
                            latencies.sort_by(|a, b| a.total_cmp(b));
                            let at = |q: f64| {
                                let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
                                latencies.get(i).copied().unwrap_or(f64::NAN)
                            };
                            let _ = reply.send((at(0.5), at(0.99), at(1.0)));
                        }
                    }
                }
                let (ready, pending): (Vec<_>, Vec<_>) = waiting
                    .drain(..)
                    .partition(|(count, _)| seen.len() >= *count);
                waiting = pending;
                for (_, reply) in ready {
                    let _ = reply.send(());
                }
            }
        });
        StateWatcher {
            queries: tx,
            published,
        }
    }

    async fn wait_for_count(&self, count: usize) {
        let (tx, rx) = oneshot::channel();
        self.queries.send(Query::WaitFor(count, tx)).unwrap();
        rx.await.unwrap();
    }

    fn reset_latencies(&self) {
        self.queries.send(Query::Reset).unwrap();
    }

    async fn latency_percentiles(&self) -> (f64, f64, f64) {
        let (tx, rx) = oneshot::channel();
        self.queries.send(Query::Percentiles(tx)).unwrap();
        rx.await.unwrap()
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// CPU time (user and system) a process has used so far, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
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
fn pid_named(name: &str) -> Option<u32> {
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
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Compacts the store's history up to now (what `--auto-compaction-*` does periodically).
async fn compact(etcd: &Client) {
    let mut kv = etcd.kv_client();
    let revision = kv
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    kv.compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
}

/// A fresh etcd of the benchmark's own, on free ports, with its data on the same disk as
/// the repository (not a tmpfs), removed at the end.
struct PrivateEtcd {
    endpoint: String,
    data_dir: std::path::PathBuf,
    child: Child,
}

impl PrivateEtcd {
    fn start() -> PrivateEtcd {
        let port = |_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let (client, peer) = (port(0), port(1));
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data_dir = std::env::current_dir()
            .unwrap()
            .join(format!(".data/bench-etcd-{}", std::process::id()));
        let child = Command::new(std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into()))
            .args(["--name", "bench", "--data-dir"])
            .arg(&data_dir)
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("bench={peer_url}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start etcd (scripts/setup.sh installs it), or pass --shared-etcd");
        PrivateEtcd {
            endpoint,
            data_dir,
            child,
        }
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

async fn wait_for_etcd(endpoint: &str) {
    for _ in 0..100 {
        if let Ok(mut client) = Client::connect([endpoint], None).await {
            if client.get("/", None).await.is_ok() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the benchmark's etcd on {endpoint} did not come up");
}
