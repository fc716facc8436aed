//! `--floor`: the I/O floor (`floor.rs`) and the pipeline (`run all`) drain the same
//! workload in alternating rounds of the same run, against the same private etcd and
//! broker, so the machine's load hits both alike. Per round and as medians: drain rate,
//! pipeline ÷ floor, CPU per message of each process, RabbitMQ and etcd, and etcd's own
//! counts per message. `--counts` adds one round of each through a counting AMQP proxy
//! (`amqp_counts.rs`) and prints what each sends per message, side by side. Each drain is
//! sampled every second (`series.rs`) and `target/bench/floor.svg` shows the rounds one after
//! the other on one time axis, floor and pipeline in their own colours (`plot.rs`).

use std::process::{Command, Stdio};
use std::time::Instant;

use super::plot;
use super::series::{sample_while, Sample, Sampler};

use etcd_client::{Client, DeleteOptions};
use heat_pipeline::amqp::Topology;
use lapin::Channel;

use super::amqp_counts::{self, AmqpCounts};
use super::metrics::{cpu_seconds, etcd_metrics, peak_rss_mib, sum_samples};
use super::processes::{spawn_pipeline, Process};
use super::publish::publish;
use super::python;
use super::watcher::StateWatcher;
use super::{etcd, workload, Args, STALL};

/// What a round's runs share.
pub struct Rig<'a> {
    pub args: &'a Args,
    pub channel: &'a Channel,
    pub etcd: &'a Client,
    pub etcd_endpoint: &'a str,
    pub amqp_url: &'a str,
    pub template: &'a str,
    pub broker_pids: &'a [u32],
    pub etcd_pids: &'a [u32],
    pub private_etcd: bool,
    /// The bench's start: the plots' time axis.
    pub origin: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Floor,
    Pipeline,
    /// `--python`: the sequential Python worker (`python.rs`).
    Python,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Floor => "floor",
            Kind::Pipeline => "pipeline",
            Kind::Python => "python",
        }
    }

    /// The round's resources and pipeline name are tagged with this.
    fn tag(self) -> char {
        match self {
            Kind::Floor => 'f',
            Kind::Pipeline => 'p',
            Kind::Python => 'y',
        }
    }
}

/// One drain's figures.
struct Drain {
    rate: f64,
    /// CPU per message (us): the process, RabbitMQ, etcd.
    cpu: [f64; 3],
    rss: f64,
    etcd: EtcdCounts,
    amqp: Option<AmqpCounts>,
    incomplete: bool,
    /// One per second of the drain.
    samples: Vec<Sample>,
}

/// etcd's own counters (its /metrics), as a difference over a drain.
#[derive(Debug, Clone, Copy, Default)]
pub struct EtcdCounts {
    pub txns: f64,
    pub puts: f64,
    pub deletes: f64,
    pub ranges: f64,
    pub grpc_txn_calls: f64,
    pub received_bytes: f64,
    pub sent_bytes: f64,
    pub proposals: f64,
    pub fsyncs: f64,
}

impl EtcdCounts {
    fn scrape(endpoint: &str) -> EtcdCounts {
        let text = etcd_metrics(endpoint);
        let sum = |name: &str, labels: &[&str]| sum_samples(&text, name, labels);
        EtcdCounts {
            txns: sum("etcd_mvcc_txn_total", &[]),
            puts: sum("etcd_mvcc_put_total", &[]),
            deletes: sum("etcd_mvcc_delete_total", &[]),
            ranges: sum("etcd_mvcc_range_total", &[]),
            grpc_txn_calls: sum("grpc_server_handled_total", &["grpc_method=\"Txn\""]),
            received_bytes: sum("etcd_network_client_grpc_received_bytes_total", &[]),
            sent_bytes: sum("etcd_network_client_grpc_sent_bytes_total", &[]),
            proposals: sum("etcd_server_proposals_committed_total", &[]),
            fsyncs: sum("etcd_disk_wal_fsync_duration_seconds_count", &[]),
        }
    }

    fn since(self, before: EtcdCounts) -> EtcdCounts {
        EtcdCounts {
            txns: self.txns - before.txns,
            puts: self.puts - before.puts,
            deletes: self.deletes - before.deletes,
            ranges: self.ranges - before.ranges,
            grpc_txn_calls: self.grpc_txn_calls - before.grpc_txn_calls,
            received_bytes: self.received_bytes - before.received_bytes,
            sent_bytes: self.sent_bytes - before.sent_bytes,
            proposals: self.proposals - before.proposals,
            fsyncs: self.fsyncs - before.fsyncs,
        }
    }
}

/// The machine's load averages (1, 5, 15 min), as `uptime` prints them.
pub fn load() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

impl Rig<'_> {
    /// The alternating rounds (`--floor`), then the counted ones (`--counts`).
    pub async fn run(&self) {
        let n = self.args.messages;
        let mut rows: Vec<(Drain, Drain)> = Vec::new();
        let mut pythons: Vec<Drain> = Vec::new();
        if self.args.floor {
            println!(
                "== floor vs pipeline: {} rounds of {n} creates each, alternating which goes first; CPU in us per message",
                self.args.rounds
            );
            println!(
                "{:<6} {:<9} {:>7} {:>8} {:>9} {:>9} {:>6} {:>8}  load (1/5/15 min)",
                "round", "", "msg/s", "p ÷ f", "process", "RabbitMQ", "etcd", "RSS MiB"
            );
            for round in 1..=self.args.rounds {
                let order = if round % 2 == 1 {
                    [Kind::Floor, Kind::Pipeline]
                } else {
                    [Kind::Pipeline, Kind::Floor]
                };
                let mut floor: Option<Drain> = None;
                let mut pipeline = None;
                for kind in order {
                    let load = load();
                    let drain = self.drain(kind, round, None).await;
                    let ratio = match (kind, &floor) {
                        (Kind::Pipeline, Some(f)) => drain.rate / f.rate,
                        _ => f64::NAN,
                    };
                    print_row(round, kind, &drain, ratio, &load);
                    match kind {
                        Kind::Floor => floor = Some(drain),
                        _ => pipeline = Some(drain),
                    }
                }
                let (floor, pipeline) = (floor.expect("ran"), pipeline.expect("ran"));
                if order[0] == Kind::Pipeline {
                    println!(
                        "{:<6} pipeline ÷ floor: {:.2}",
                        "",
                        pipeline.rate / floor.rate
                    );
                }
                if self.args.python {
                    let load = load();
                    let python = self.drain(Kind::Python, round, None).await;
                    print_row(round, Kind::Python, &python, f64::NAN, &load);
                    println!(
                        "{:<6} pipeline ÷ python: {:.1}",
                        "",
                        pipeline.rate / python.rate
                    );
                    pythons.push(python);
                }
                rows.push((floor, pipeline));
            }
            print_medians(&rows, n);
            if !pythons.is_empty() {
                let python = median(pythons.iter().map(|p| p.rate).collect());
                let ratios = rows.iter().zip(&pythons).map(|(r, p)| r.1.rate / p.rate);
                println!(
                    "  the sequential Python worker ({} creates a round): {python:.0} msg/s; pipeline ÷ python {:.1} (median of the rounds' ratios); its CPU per message {:.0} us",
                    self.args.python_messages,
                    median(ratios.collect()),
                    median(pythons.iter().map(|p| p.cpu[0]).collect()),
                );
            }
            plot_rounds(&rows, n);
        }
        if self.args.counts {
            println!();
            println!("== counts per message: one round of each through a counting AMQP proxy (not timed)");
            let floor = self.drain(Kind::Floor, 0, Some(())).await;
            let pipeline = self.drain(Kind::Pipeline, 0, Some(())).await;
            print_counts(&floor, &pipeline, n);
        }
    }

    /// Preloads `--messages` creates into a pipeline of its own, starts `kind` on it and
    /// times it until every /state is written. `counted`: through the counting proxy.
    async fn drain(&self, kind: Kind, round: usize, counted: Option<()>) -> Drain {
        let tag = format!("{}{round}", kind.tag());
        let name = format!("bench-{}-{tag}", std::process::id());
        let prefix = format!("/{name}");
        let topology = Topology::new(name.clone(), 20);
        topology.declare(self.channel).await.expect("declare");
        let watcher = StateWatcher::start(self.etcd, &prefix).await;
        let creates = match kind {
            Kind::Python => self.args.python_messages,
            _ => self.args.messages,
        };
        let messages = workload::create(self.template, &tag, 0..creates);
        publish(&watcher.published, self.channel, &topology, &messages, None).await;
        let proxy = match counted {
            Some(()) => Some(amqp_counts::Proxy::start(self.amqp_url).await),
            None => None,
        };
        let amqp_url = proxy
            .as_ref()
            .map_or(self.amqp_url.to_string(), |p| p.url.clone());
        let env = [
            ("AMQP_URL", amqp_url.as_str()),
            ("ETCD_ENDPOINTS", self.etcd_endpoint),
            ("PIPELINE_NAME", name.as_str()),
            ("ETCD_KEY_PREFIX", prefix.as_str()),
            ("RUST_LOG", "warn"),
            ("HTTP_ADDR", "127.0.0.1:0"),
        ];
        let broker = cpu_of(self.broker_pids);
        let etcd_cpu = cpu_of(self.etcd_pids);
        let etcd_before = EtcdCounts::scrape(self.etcd_endpoint);
        let at = Instant::now();
        let mut process = match kind {
            Kind::Floor => spawn_floor(self.args, &env),
            Kind::Pipeline => spawn_pipeline(self.args, &env).pop().expect("one process"),
            Kind::Python => python::spawn(&env),
        };
        let sampler = Sampler::new(self.origin, 0, vec![process.child.id()]);
        let wait = watcher.wait_for(&tag, messages.len(), STALL);
        let (writes, samples) = sample_while(&watcher, sampler, wait).await;
        let elapsed = writes
            .last
            .map_or(f64::NAN, |last| (last - at).as_secs_f64());
        let count = messages.len() as f64;
        let per_message = |seconds: f64| seconds * 1e6 / count;
        let drain = Drain {
            rate: count / elapsed,
            cpu: [
                per_message(cpu_seconds(process.child.id())),
                per_message(cpu_of(self.broker_pids) - broker),
                per_message(cpu_of(self.etcd_pids) - etcd_cpu),
            ],
            rss: peak_rss_mib(process.child.id()),
            etcd: EtcdCounts::scrape(self.etcd_endpoint).since(etcd_before),
            amqp: proxy.as_ref().map(|p| p.counts()),
            incomplete: !writes.complete,
            samples,
        };
        if drain.incomplete {
            println!(
                "warning: {} stopped with {} of {} /state written",
                kind.name(),
                writes.written,
                messages.len()
            );
        }
        let _ = Command::new("kill")
            .args(["-TERM", &process.child.id().to_string()])
            .status();
        let status = process.child.wait().expect("wait");
        if !status.success() {
            println!("warning: {} exited with {status}", kind.name());
        }
        drop(proxy);
        topology.delete(self.channel).await;
        let _ = self
            .etcd
            .kv_client()
            .delete(prefix.as_str(), Some(DeleteOptions::new().with_prefix()))
            .await;
        if self.private_etcd {
            etcd::compact(self.etcd).await;
        }
        drain
    }
}

/// `target/bench/floor.svg`: every round's drains on one time axis.
fn plot_rounds(rows: &[(Drain, Drain)], n: usize) {
    const SVG: &str = "target/bench/floor.svg";
    let lines: Vec<plot::Line> = rows
        .iter()
        .flat_map(|(floor, pipeline)| {
            [
                plot::Line {
                    label: "floor",
                    color: plot::FLOOR,
                    samples: &floor.samples,
                },
                plot::Line {
                    label: "pipeline",
                    color: plot::PIPELINE,
                    samples: &pipeline.samples,
                },
            ]
        })
        .collect();
    let title = format!(
        "I/O floor and pipeline, {} alternating rounds of {n} preloaded creates",
        rows.len()
    );
    match plot::write(SVG, &title, plot::Axis::Seconds, &lines) {
        Ok(()) => println!("  plot: {SVG}"),
        Err(e) => println!("  warning: no plot: {e}"),
    }
}

fn cpu_of(pids: &[u32]) -> f64 {
    match pids {
        [] => f64::NAN,
        pids => pids.iter().map(|&pid| cpu_seconds(pid)).sum(),
    }
}

/// The floor: this benchmark's own binary in its `--floor-worker` mode.
fn spawn_floor(args: &Args, env: &[(&str, &str)]) -> Process {
    let own = std::env::current_exe().expect("own path");
    let mut command = match &args.floor_wrapper {
        Some(wrapper) => {
            let mut command = Command::new(wrapper);
            command.arg(own);
            command
        }
        None => Command::new(own),
    };
    let child = command
        .args(["--bench", "--floor-worker", "--concurrency"])
        .arg(super::concurrency(args).to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the floor");
    Process {
        label: "floor".into(),
        http: String::new(),
        child,
    }
}

fn print_row(round: usize, kind: Kind, drain: &Drain, ratio: f64, load: &str) {
    let ratio = if ratio.is_nan() {
        String::new()
    } else {
        format!("{ratio:.2}")
    };
    println!(
        "{:<6} {:<9} {:>7.0} {:>8} {:>9.0} {:>9.0} {:>6.0} {:>8.1}  {load}",
        round,
        kind.name(),
        drain.rate,
        ratio,
        drain.cpu[0],
        drain.cpu[1],
        drain.cpu[2],
        drain.rss,
    );
}

fn print_medians(rows: &[(Drain, Drain)], n: usize) {
    let of = |pick: &dyn Fn(&(Drain, Drain)) -> f64| median(rows.iter().map(pick).collect());
    println!();
    println!("medians over {} rounds ({n} messages each):", rows.len());
    println!(
        "  drain: floor {:.0} msg/s, pipeline {:.0} msg/s; pipeline ÷ floor {:.2} (median of the rounds' ratios)",
        of(&|r| r.0.rate),
        of(&|r| r.1.rate),
        of(&|r| r.1.rate / r.0.rate),
    );
    for (i, who) in ["own process", "RabbitMQ", "etcd"].iter().enumerate() {
        println!(
            "  CPU per message, {who}: floor {:.0} us, pipeline {:.0} us; pipeline ÷ floor {:.2}",
            of(&|r| r.0.cpu[i]),
            of(&|r| r.1.cpu[i]),
            of(&|r| r.1.cpu[i] / r.0.cpu[i]),
        );
    }
    let per = |c: f64| c / n as f64;
    println!(
        "  etcd per message (its own counters): Txn calls floor {:.3}, pipeline {:.3}; received bytes floor {:.0}, pipeline {:.0}",
        of(&|r| per(r.0.etcd.grpc_txn_calls)),
        of(&|r| per(r.1.etcd.grpc_txn_calls)),
        of(&|r| per(r.0.etcd.received_bytes)),
        of(&|r| per(r.1.etcd.received_bytes)),
    );
    println!(
        "  peak RSS: floor {:.1} MiB, pipeline {:.1} MiB",
        of(&|r| r.0.rss),
        of(&|r| r.1.rss)
    );
}

fn print_counts(floor: &Drain, pipeline: &Drain, n: usize) {
    let per = |v: f64| v / n as f64;
    println!(
        "drain through the proxy: floor {:.0} msg/s, pipeline {:.0} msg/s",
        floor.rate, pipeline.rate
    );
    println!(
        "{:<58} {:>10} {:>10} {:>10}",
        "per message", "floor", "pipeline", "difference"
    );
    let row = |what: &str, f: f64, p: f64| {
        println!(
            "{what:<58} {:>10.3} {:>10.3} {:>+10.3}",
            per(f),
            per(p),
            per(p) - per(f)
        );
    };
    let (fe, pe) = (floor.etcd, pipeline.etcd);
    row(
        "etcd: mvcc txns (etcd_mvcc_txn_total: two per Txn call)",
        fe.txns,
        pe.txns,
    );
    row(
        "etcd: Txn calls (grpc_server_handled_total)",
        fe.grpc_txn_calls,
        pe.grpc_txn_calls,
    );
    row("etcd: puts", fe.puts, pe.puts);
    row("etcd: deletes", fe.deletes, pe.deletes);
    row(
        "etcd: ranges (one per compare, plus a failed Txn's reads)",
        fe.ranges,
        pe.ranges,
    );
    row("etcd: raft proposals committed", fe.proposals, pe.proposals);
    row("etcd: WAL fsyncs", fe.fsyncs, pe.fsyncs);
    row(
        "etcd: gRPC bytes received (requests)",
        fe.received_bytes,
        pe.received_bytes,
    );
    row(
        "etcd: gRPC bytes sent (answers, and the bench's watch)",
        fe.sent_bytes,
        pe.sent_bytes,
    );
    if let (Some(fa), Some(pa)) = (&floor.amqp, &pipeline.amqp) {
        for (what, f, p) in amqp_counts::rows(fa, pa) {
            row(&what, f, p);
        }
    }
}
