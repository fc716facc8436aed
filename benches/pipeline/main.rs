//! The benchmark behind `scripts/bench.sh`: drain throughput, end-to-end latency under a
//! steady offered load, CPU per message of the pipeline, the broker and etcd, the etcd
//! transactions per message, peak RSS of each pipeline process, and the raw etcd put rate
//! on the same machine for comparison. It prints figures; it asserts nothing about time.
//!
//! Workloads (`--workload`): `create`, new resources each sending the seed result (one
//! completed create), and `lifecycle`, which runs `create` and then, on the same pipeline
//! processes and other resource ids, resources that are created (in progress, then
//! complete), modified twice and deleted, interleaved as in a busy region, with failures and
//! outputs of 1 to 64 KiB (`workload.rs`).
//!
//! `cargo bench --bench pipeline -- --help` lists the knobs. Services come from AMQP_URL and
//! ETCD_ENDPOINTS; the pipeline is the release binary, started as child processes.

mod amqp_counts;
mod etcd;
mod floor;
mod metrics;
mod plot;
#[path = "../../tests/common/private_etcd.rs"]
#[allow(dead_code)]
mod private_etcd;
mod processes;
mod publish;
mod python;
mod rounds;
mod series;
mod soak;
mod watcher;
mod workload;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use etcd_client::{Client, DeleteOptions};
use heat_pipeline::amqp::{self, Topology};
use lapin::Channel;

use metrics::{cpu_seconds, peak_rss_mib, scrape, subtract_samples, Requests};
use private_etcd::PrivateEtcd;
use processes::{spawn_pipeline, Process};
use publish::publish;
use watcher::StateWatcher;
use workload::{LifecycleShape, Message, LIFECYCLE_STEPS};

#[derive(Debug, Parser)]
#[command(about = "heat-pipeline benchmark (run through scripts/bench.sh)")]
struct Args {
    /// Results preloaded before the pipeline starts (drain phase), per workload.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// `create`: new resources, one completed create each. `lifecycle`: `create`, then on
    /// the same processes resources that go create, modify, modify, delete.
    #[arg(long, value_enum, default_value_t = Workload::Create)]
    workload: Workload,
    /// `lifecycle`: resources in flight at once, each sending its next result in turn.
    #[arg(long, default_value_t = 300)]
    window: usize,
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
    /// Start the floor through this program, given the floor's command line as its
    /// arguments (`scripts/instructions-run-all.sh` counts the floor's instructions with a
    /// valgrind wrapper).
    #[arg(long)]
    floor_wrapper: Option<String>,
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
    /// Instead of the usual phases: the I/O floor (`floor.rs`) and the pipeline drain the
    /// same creates in `--rounds` alternating rounds; prints rates, pipeline ÷ floor and CPU
    /// per message of each process, RabbitMQ and etcd (`rounds.rs`).
    #[arg(long)]
    floor: bool,
    /// Rounds of `--floor` (each runs the floor and the pipeline once).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// With `--floor`: each round also drains `--python-messages` creates with the
    /// sequential Python worker (`python.rs`), the yardstick of "×N the Python worker".
    #[arg(long)]
    python: bool,
    /// Creates per round of `--python` (it does a hundred or two a second).
    #[arg(long, default_value_t = 2_000)]
    python_messages: usize,
    /// Instead of the usual phases (after `--floor`'s rounds if given): one untimed round of
    /// the floor and of the pipeline through a counting AMQP proxy, and a table per message
    /// of AMQP frames, methods and bytes and of etcd's transactions, operations and bytes.
    #[arg(long)]
    counts: bool,
    /// Instead of the usual phases: `--soak-messages` creates through the pipeline with a
    /// bounded backlog, a row of drain rate and RSS per tenth, and a plot (`soak.rs`).
    #[arg(long)]
    soak: bool,
    /// Messages of `--soak`.
    #[arg(long, default_value_t = 1_000_000)]
    soak_messages: usize,
    /// `--soak`'s backlog: at most this many published and not yet in /state.
    #[arg(long, default_value_t = 30_000)]
    soak_backlog: usize,
    /// `--soak` stops after this long, whatever it has done, and prints what it has.
    #[arg(long, default_value_t = 40)]
    soak_minutes: u64,
    /// Run as the I/O floor process (started by `--floor` and `--counts`).
    #[arg(long, hide = true)]
    floor_worker: bool,
    /// Passed by `cargo bench`; without it (under `cargo test`) the benchmark does nothing.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    Create,
    Lifecycle,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Create => "create",
            Workload::Lifecycle => "lifecycle",
        }
    }
}

/// How long a wait for /state writes goes on without any before it gives up.
const STALL: Duration = Duration::from_secs(60);

/// Seeds of the lifecycle messages, so that every run sends the same ones.
const DRAIN_SEED: u64 = 12;
const LATENCY_SEED: u64 = 1212;

/// What a workload measured, for the summary.
struct Figures {
    workload: Workload,
    drain_rate: f64,
    latency: (f64, f64),
    /// etcd requests per message.
    requests: f64,
    /// CPU per message of the pipeline, the broker and etcd, in microseconds.
    cpu: [f64; 3],
}

/// Everything a phase needs.
struct Bench {
    args: Args,
    channel: Channel,
    topology: Topology,
    template: String,
    watcher: StateWatcher,
    etcd: Client,
    private_etcd: bool,
    broker_pids: Vec<u32>,
    etcd_pids: Vec<u32>,
    processes: Vec<Process>,
}

/// CPU time and pipeline metrics at the start of a phase.
struct Mark {
    at: Instant,
    pipeline: f64,
    broker: f64,
    etcd: f64,
    metrics: String,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !args.bench {
        println!("benchmark skipped: run scripts/bench.sh");
        return;
    }
    if args.floor_worker {
        floor::run(concurrency(&args)).await;
        return;
    }
    let amqp_url = std::env::var("AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    // A fresh etcd with its data on the repository's disk (not a tmpfs), removed at the end.
    let private_etcd = if args.shared_etcd {
        None
    } else {
        let dir = format!(".data/bench-etcd-{}", std::process::id());
        Some(PrivateEtcd::start_in(std::env::current_dir().unwrap().join(dir)).await)
    };
    let etcd_endpoints = match &private_etcd {
        Some(etcd) => etcd.endpoint.clone(),
        None => std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| "http://127.0.0.1:2379".into()),
    };
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
    let broker_pids = match args.broker_pids.as_slice() {
        [] => metrics::pid_named("beam.smp").into_iter().collect(),
        pids => pids.to_vec(),
    };
    let etcd_pids = match &private_etcd {
        Some(etcd) => vec![etcd.pid()],
        None => args.etcd_pids.clone(),
    };

    if args.floor || args.counts || args.soak {
        println!(
            "heat-pipeline benchmark, {}: {} messages, {}, concurrency {}, {} etcd",
            if args.soak { "soak" } else { "floor" },
            if args.soak {
                args.soak_messages
            } else {
                args.messages
            },
            layout(&args),
            concurrency(&args),
            if args.shared_etcd {
                "the shared"
            } else {
                "a fresh private"
            }
        );
        if private_etcd.is_some() {
            etcd::compact(&etcd).await;
        }
        let rig = rounds::Rig {
            args: &args,
            channel: &channel,
            etcd: &etcd,
            etcd_endpoint: &etcd_endpoints,
            amqp_url: &amqp_url,
            template: &template,
            broker_pids: &broker_pids,
            etcd_pids: &etcd_pids,
            private_etcd: private_etcd.is_some(),
            origin: Instant::now(),
        };
        if args.soak {
            soak::run(&rig).await;
        } else {
            rig.run().await;
        }
        topology.delete(&channel).await;
        return;
    }

    println!(
        "heat-pipeline benchmark: {} messages, workload {}, {}, concurrency {}, {} etcd",
        args.messages,
        args.workload.name(),
        layout(&args),
        concurrency(&args),
        if args.shared_etcd {
            "the shared"
        } else {
            "a fresh private"
        }
    );

    let put_rate = etcd::raw_put_rate(
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
        etcd::compact(&etcd).await;
    }

    // The pipeline's broker URL: with `lifecycle` the processes are paused while the
    // second workload is preloaded, so they get the longest heartbeat the broker grants
    // (60 s instead of the binary's 10 s), lest the broker close their connections.
    let pipeline_amqp_url = match args.workload {
        Workload::Create => amqp_url.clone(),
        Workload::Lifecycle => long_heartbeat(&amqp_url),
    };
    let env = [
        ("AMQP_URL", pipeline_amqp_url.as_str()),
        ("ETCD_ENDPOINTS", etcd_endpoints.as_str()),
        ("PIPELINE_NAME", name.as_str()),
        ("ETCD_KEY_PREFIX", prefix.as_str()),
        ("RUST_LOG", "warn"),
        ("HTTP_ADDR", "127.0.0.1:0"),
    ];
    let mut bench = Bench {
        etcd_pids,
        broker_pids,
        args,
        channel,
        topology,
        template,
        watcher: StateWatcher::start(&etcd, &prefix).await,
        etcd,
        private_etcd: private_etcd.is_some(),
        processes: Vec::new(),
    };
    let mut figures = Vec::new();

    // create. Drain: preload, then start the pipeline and time until every /state is
    // written.
    let messages = workload::create(&bench.template, "cd", 0..bench.args.messages);
    bench.preload(&messages).await;
    let mark = bench.mark();
    bench.processes = spawn_pipeline(&bench.args, &env);
    let (drain_rate, requests, cpu) = bench.drain(Workload::Create, "cd", &messages, mark).await;
    println!(
        "ratio to the raw etcd put rate / 3 (each message is three writes): {:.2}",
        drain_rate / (put_rate / 3.0)
    );
    let latency = bench.latency(Workload::Create, "cl").await;
    figures.push(Figures {
        workload: Workload::Create,
        drain_rate,
        latency,
        requests,
        cpu,
    });

    if bench.args.workload == Workload::Lifecycle {
        // lifecycle, on the same processes: paused while the queue is preloaded, so that
        // they drain a full queue as they did for create.
        if bench.private_etcd {
            etcd::compact(&bench.etcd).await;
        }
        let resources = (bench.args.messages / LIFECYCLE_STEPS).max(1);
        let messages = workload::lifecycle("ld", resources, bench.shape(), DRAIN_SEED);
        println!();
        println!(
            "== workload lifecycle: {} resources x {LIFECYCLE_STEPS} results ({} messages), {} in flight at once, 5 % of jobs failing, outputs 1-64 KiB (log-uniform, {:.1} KiB on average)",
            resources,
            messages.len(),
            bench.args.window,
            average_kib(&messages),
        );
        // The pipeline's metrics before the pause (a paused process does not answer; an
        // idle one does not change them), the CPU times after the preload.
        let metrics = scrape(&bench.processes);
        bench.signal("STOP");
        let paused = Instant::now();
        bench.preload(&messages).await;
        let mark = Mark {
            metrics,
            ..bench.cpu_mark()
        };
        bench.signal("CONT");
        if paused.elapsed() > Duration::from_secs(45) {
            println!("warning: the pipeline was paused for {:.0} s, near the broker's heartbeat timeout: its connections may have been closed", paused.elapsed().as_secs_f64());
        }
        let (drain_rate, requests, cpu) = bench
            .drain(Workload::Lifecycle, "ld", &messages, mark)
            .await;
        let latency = bench.latency(Workload::Lifecycle, "ll").await;
        figures.push(Figures {
            workload: Workload::Lifecycle,
            drain_rate,
            latency,
            requests,
            cpu,
        });
    }

    println!();
    for process in &bench.processes {
        println!(
            "peak RSS {} (pid {}): {:.1} MiB",
            process.label,
            process.child.id(),
            peak_rss_mib(process.child.id())
        );
    }
    if figures.len() > 1 {
        println!();
        println!("== side by side (same pipeline processes; CPU and etcd requests per message in the drain)");
        println!(
            "{:<10} {:>11} {:>8} {:>8} {:>13} {:>21} {:>9} {:>7}",
            "workload",
            "drain msg/s",
            "p50 ms",
            "p99 ms",
            "etcd req/msg",
            "CPU us/msg: pipeline",
            "RabbitMQ",
            "etcd"
        );
        for f in &figures {
            println!(
                "{:<10} {:>11.0} {:>8.1} {:>8.1} {:>13.2} {:>21.0} {:>9.0} {:>7.0}",
                f.workload.name(),
                f.drain_rate,
                f.latency.0,
                f.latency.1,
                f.requests,
                f.cpu[0],
                f.cpu[1],
                f.cpu[2]
            );
        }
    }
    bench.stop().await;
    let _ = bench
        .etcd
        .kv_client()
        .delete(prefix.as_str(), Some(DeleteOptions::new().with_prefix()))
        .await;
}

impl Bench {
    fn shape(&self) -> LifecycleShape {
        LifecycleShape {
            window: self.args.window,
            ..LifecycleShape::default()
        }
    }

    fn cpu_of(pids: &[u32]) -> f64 {
        match pids {
            [] => f64::NAN,
            pids => pids.iter().map(|&pid| cpu_seconds(pid)).sum(),
        }
    }

    /// CPU time so far of the pipeline, the broker and etcd (NaN where unknown: a remote or
    /// shared one), and the pipeline's metrics.
    fn mark(&self) -> Mark {
        Mark {
            metrics: scrape(&self.processes),
            ..self.cpu_mark()
        }
    }

    /// [`Bench::mark`] without the metrics.
    fn cpu_mark(&self) -> Mark {
        Mark {
            at: Instant::now(),
            pipeline: self
                .processes
                .iter()
                .map(|p| cpu_seconds(p.child.id()))
                .sum(),
            broker: Self::cpu_of(&self.broker_pids),
            etcd: Self::cpu_of(&self.etcd_pids),
            metrics: String::new(),
        }
    }

    async fn preload(&self, messages: &[Message]) {
        let started = Instant::now();
        publish(
            &self.watcher.published,
            &self.channel,
            &self.topology,
            messages,
            None,
        )
        .await;
        println!(
            "preloaded {} messages in {:.1} s",
            messages.len(),
            started.elapsed().as_secs_f64()
        );
    }

    /// Waits until the phase `tag` has written every /state its messages should, and prints
    /// the drain's figures. Returns the rate, the etcd requests per message and the CPU per
    /// message (us) of the pipeline, the broker and etcd.
    async fn drain(
        &self,
        workload: Workload,
        tag: &str,
        messages: &[Message],
        mark: Mark,
    ) -> (f64, f64, [f64; 3]) {
        let expected = messages.iter().filter(|m| m.finished.is_some()).count();
        let expected_failed = messages.iter().filter(|m| m.finished == Some(true)).count();
        let writes = self.watcher.wait_for(tag, expected, STALL).await;
        let drain = writes
            .last
            .map_or(f64::NAN, |last| (last - mark.at).as_secs_f64());
        let now = self.mark();
        let count = messages.len();
        let drain_rate = count as f64 / drain;
        let label = match workload {
            Workload::Create => String::new(),
            Workload::Lifecycle => " (lifecycle)".into(),
        };
        println!(
            "drain{label}: {count} messages through all three stages in {drain:.2} s = {drain_rate:.0} msg/s"
        );
        println!(
            "/state writes: {} of {expected} expected ({} failed jobs of {expected_failed} expected), {} repeated",
            writes.written, writes.failed, writes.repeated
        );
        if !writes.complete {
            println!(
                "warning: no /state write for {} s: stopped waiting with {} of {expected} (versions superseded before wrap wrote them, or lost)",
                STALL.as_secs(),
                writes.written
            );
        }
        // CPU time per message is steadier than a rate on a shared machine: it says what each
        // process costs, whatever else the cores were doing.
        let pipeline_cpu = now.pipeline - mark.pipeline;
        let broker_cpu = now.broker - mark.broker;
        let etcd_cpu = now.etcd - mark.etcd;
        let per_message = |seconds: f64| {
            if seconds.is_nan() {
                "unknown".to_string()
            } else {
                format!("{:.0} us", seconds * 1e6 / count as f64)
            }
        };
        let cpu = format!(
            "pipeline {}, RabbitMQ {}, etcd {}",
            per_message(pipeline_cpu),
            per_message(broker_cpu),
            per_message(etcd_cpu)
        );
        println!(
            "CPU per message in the drain: {cpu} ({:.2} cores busy on average)",
            (pipeline_cpu + broker_cpu + etcd_cpu) / drain,
        );
        // How well the stages batched their etcd requests while draining.
        let requests = Requests::of(&subtract_samples(&now.metrics, &mark.metrics));
        println!(
            "etcd transactions in the drain: {:.0} commits and {:.0} reads for {count} messages x 3 stages",
            requests.commits(),
            requests.reads(),
        );
        println!(
            "etcd requests per message in the drain: {}",
            requests.per_message(count)
        );
        let cpu = [pipeline_cpu, broker_cpu, etcd_cpu].map(|s| s * 1e6 / count as f64);
        let requests = (requests.commits() + requests.reads()) / count as f64;
        (drain_rate, requests, cpu)
    }

    /// Latency under a steady offered load, on a store compacted as a production etcd's
    /// periodic compaction keeps it (docs/SCALING.md). Returns p50 and p99.
    async fn latency(&self, workload: Workload, tag: &str) -> (f64, f64) {
        if self.private_etcd {
            etcd::compact(&self.etcd).await;
        }
        let offered = self.args.rate as usize * self.args.seconds as usize;
        let messages = match workload {
            Workload::Create => workload::create(&self.template, tag, 0..offered),
            Workload::Lifecycle => workload::lifecycle(
                tag,
                (offered / LIFECYCLE_STEPS).max(1),
                self.shape(),
                LATENCY_SEED,
            ),
        };
        let expected = messages.iter().filter(|m| m.finished.is_some()).count();
        self.watcher.reset_latencies();
        let before = scrape(&self.processes);
        publish(
            &self.watcher.published,
            &self.channel,
            &self.topology,
            &messages,
            Some(self.args.rate),
        )
        .await;
        let writes = self.watcher.wait_for(tag, expected, STALL).await;
        let (p50, p99, max, count) = self.watcher.latency_percentiles().await;
        let of = match workload {
            Workload::Create => String::new(),
            Workload::Lifecycle => {
                format!(" ({count} finished jobs; in-progress results have no /state)")
            }
        };
        println!(
            "latency at {} msg/s offered for {} s: p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms{of}",
            self.args.rate, self.args.seconds
        );
        if !writes.complete {
            println!(
                "warning: no /state write for {} s: stopped waiting with {} of {expected}",
                STALL.as_secs(),
                writes.written
            );
        }
        let text = subtract_samples(&scrape(&self.processes), &before);
        println!(
            "etcd requests per message in the latency phase: {}",
            Requests::of(&text).per_message(messages.len())
        );
        metrics::print_time_split(&text);
        (p50, p99)
    }

    /// Sends a signal (`STOP`, `CONT`) to every pipeline process.
    fn signal(&self, signal: &str) {
        for process in &self.processes {
            let _ = Command::new("kill")
                .args([format!("-{signal}"), process.child.id().to_string()])
                .status();
        }
    }

    async fn stop(&mut self) {
        self.signal("TERM");
        for process in &mut self.processes {
            let status = process.child.wait().unwrap();
            if !status.success() {
                println!("warning: {} exited with {status}", process.label);
            }
        }
        self.topology.delete(&self.channel).await;
    }
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

/// Each URL of `urls` (comma-separated) with a 60 s heartbeat, unless it sets one.
fn long_heartbeat(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            if url.contains("heartbeat=") {
                url.to_string()
            } else if url.contains('?') {
                format!("{url}&heartbeat=60")
            } else {
                format!("{url}?heartbeat=60")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The average size of the messages' bodies, in KiB.
fn average_kib(messages: &[Message]) -> f64 {
    let total: usize = messages.iter().map(|m| m.body.len()).sum();
    total as f64 / messages.len().max(1) as f64 / 1024.0
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}
