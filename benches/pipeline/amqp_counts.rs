//! A counting AMQP proxy (`--counts`): the process under test connects through it, and it
//! forwards every byte to the broker unchanged while it reads the AMQP 0-9-1 frames going
//! each way (type, channel, size, payload, 0xCE) and counts frames, bytes and methods. No
//! management plugin, no capture tool: the counts are exact, and the proxy's own CPU is the
//! benchmark's, not the measured process's (the counted rounds are not timed).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What crossed one direction of the connections.
#[derive(Debug, Clone, Default)]
pub struct Direction {
    pub bytes: u64,
    /// Frames by type: 1 method, 2 content header, 3 body, 8 heartbeat.
    pub frames: BTreeMap<u8, u64>,
    /// Payload bytes of content headers (properties and headers table).
    pub header_bytes: u64,
    /// Method frames by name (`basic.ack`, `basic.ack multiple`, ...).
    pub methods: BTreeMap<String, u64>,
}

/// Both directions: client to broker, broker to client.
#[derive(Debug, Clone, Default)]
pub struct AmqpCounts {
    pub sent: Direction,
    pub received: Direction,
}

pub struct Proxy {
    /// The broker URL with the proxy's address in place of the broker's.
    pub url: String,
    counts: Arc<Mutex<AmqpCounts>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to the host and port of `url`.
    pub async fn start(url: &str) -> Proxy {
        let (head, rest) = url.split_once('@').unwrap_or(("amqp://", url));
        let rest = rest.trim_start_matches("amqp://");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let upstream = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:5672")
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let local = listener.local_addr().expect("address");
        let separator = if head.contains("://") && url.contains('@') {
            "@"
        } else {
            ""
        };
        let url = format!("{head}{separator}{local}/{path}");
        let counts: Arc<Mutex<AmqpCounts>> = Arc::default();
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(broker) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (broker_read, broker_write) = broker.into_split();
                tokio::spawn(pump(client_read, broker_write, shared.clone(), true));
                tokio::spawn(pump(broker_read, client_write, shared.clone(), false));
            }
        });
        Proxy { url, counts, task }
    }

    pub fn counts(&self) -> AmqpCounts {
        self.counts.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, counting the frames (`sent`: client to broker, which opens with
/// the 8-byte protocol header).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counts: Arc<Mutex<AmqpCounts>>,
    sent: bool,
) {
    let mut pending: Vec<u8> = Vec::new();
    let mut skip = if sent { 8 } else { 0 };
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        pending.extend_from_slice(&buffer[..n]);
        let mut counts = counts.lock().unwrap();
        let direction = if sent {
            &mut counts.sent
        } else {
            &mut counts.received
        };
        direction.bytes += n as u64;
        let header = skip.min(pending.len());
        pending.drain(..header);
        skip -= header;
        let mut at = 0;
        while pending.len() >= at + 7 {
            let size = u32::from_be_bytes(pending[at + 3..at + 7].try_into().unwrap()) as usize;
            if pending.len() < at + 7 + size + 1 {
                break;
            }
            let kind = pending[at];
            let payload = &pending[at + 7..at + 7 + size];
            *direction.frames.entry(kind).or_default() += 1;
            match kind {
                1 => *direction.methods.entry(method_name(payload)).or_default() += 1,
                2 => direction.header_bytes += size as u64,
                _ => {}
            }
            at += 7 + size + 1;
        }
        pending.drain(..at);
    }
    let _ = to.shutdown().await;
}

/// `class.method` by AMQP 0-9-1's names, with `multiple` marked on acks and nacks.
fn method_name(payload: &[u8]) -> String {
    if payload.len() < 4 {
        return "short method".into();
    }
    let class = u16::from_be_bytes([payload[0], payload[1]]);
    let method = u16::from_be_bytes([payload[2], payload[3]]);
    let class_name = match class {
        10 => "connection",
        20 => "channel",
        40 => "exchange",
        50 => "queue",
        60 => "basic",
        85 => "confirm",
        90 => "tx",
        _ => return format!("{class}.{method}"),
    };
    let method_name = match (class, method) {
        (60, 10) => "qos",
        (60, 11) => "qos-ok",
        (60, 20) => "consume",
        (60, 21) => "consume-ok",
        (60, 30) => "cancel",
        (60, 31) => "cancel-ok",
        (60, 40) => "publish",
        (60, 50) => "return",
        (60, 60) => "deliver",
        (60, 80) => "ack",
        (60, 90) => "reject",
        (60, 120) => "nack",
        (20, 10) => "open",
        (20, 11) => "open-ok",
        (20, 40) => "close",
        (20, 41) => "close-ok",
        (50, 10) => "declare",
        (50, 11) => "declare-ok",
        (50, 20) => "bind",
        (50, 21) => "bind-ok",
        (40, 10) => "declare",
        (40, 11) => "declare-ok",
        (85, 10) => "select",
        (85, 11) => "select-ok",
        _ => return format!("{class_name}.{method}"),
    };
    // basic.ack and basic.nack: delivery tag (8 bytes), then the flags (bit 0: multiple).
    let multiple = matches!((class, method), (60, 80) | (60, 120))
        && payload.get(12).is_some_and(|flags| flags & 1 == 1);
    let suffix = if multiple { " multiple" } else { "" };
    format!("{class_name}.{method_name}{suffix}")
}

/// Rows for the counts table: (what, floor's total, pipeline's total).
pub fn rows(floor: &AmqpCounts, pipeline: &AmqpCounts) -> Vec<(String, f64, f64)> {
    let mut rows = Vec::new();
    for (arrow, f, p) in [
        ("client -> broker", &floor.sent, &pipeline.sent),
        ("broker -> client", &floor.received, &pipeline.received),
    ] {
        rows.push((
            format!("AMQP {arrow}: bytes"),
            f.bytes as f64,
            p.bytes as f64,
        ));
        for (kind, name) in [
            (1, "method"),
            (2, "content header"),
            (3, "body"),
            (8, "heartbeat"),
        ] {
            let count = |d: &Direction| d.frames.get(&kind).copied().unwrap_or(0) as f64;
            rows.push((format!("AMQP {arrow}: {name} frames"), count(f), count(p)));
        }
        rows.push((
            format!("AMQP {arrow}: content header bytes"),
            f.header_bytes as f64,
            p.header_bytes as f64,
        ));
        let mut names: Vec<&String> = f.methods.keys().chain(p.methods.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let count = |d: &Direction| d.methods.get(name).copied().unwrap_or(0) as f64;
            rows.push((format!("AMQP {arrow}: {name}"), count(f), count(p)));
        }
    }
    rows
}
