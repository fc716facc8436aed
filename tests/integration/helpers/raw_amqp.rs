//! A minimal AMQP 0-9-1 publisher over a plain TCP stream, for messages lapin cannot
//! produce: lapin's `ShortString` is a Rust `String`, so it cannot send a header field name
//! or a short-string property (`message_id`, `content_type`, `type`, ...) that is not UTF-8.
//! An upstream written in another language can, and RabbitMQ passes the bytes on unchecked.
//!
//! What it speaks, and nothing more: the protocol header; `Connection.Start-Ok` (PLAIN),
//! `Tune-Ok` (the broker's channel-max and frame-max, no heartbeat), `Open`;
//! `Channel.Open` on channel 1; optionally `Confirm.Select`; `Basic.Publish` with its
//! content header frame and body frames, waiting for the broker's `Basic.Ack` when
//! confirms are on; `Connection.Close`. Anything unexpected from the broker (a
//! `Channel.Close` or `Connection.Close`, a `Basic.Nack`, a `Basic.Return`) is an error
//! naming it. No TLS, no heartbeats, no reconnects: a test opens one, publishes, closes.
//!
//! # Field-table values, and the `s` tag
//!
//! [`Value::ShortString`] writes the spec's `s` (a short string). RabbitMQ, and lapin after
//! it, read `s` as a signed 16-bit integer (RabbitMQ's errata), so in practice no header
//! *value* reaches lapin as a short string: the short strings lapin decodes as text are
//! field names and the short-string properties. [`Value::ShortString`] is kept for a test
//! that wants the spec's encoding on the wire anyway.

use std::io;

use lapin::uri::AMQPUri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
/// The channel all publishing happens on.
const CHANNEL: u16 = 1;
/// A frame's type, channel and size (7 bytes) and its end octet.
const FRAME_OVERHEAD: usize = 8;

/// A field-table value as it goes on the wire.
#[derive(Debug, Clone)]
pub enum Value {
    /// `S`: bytes, any bytes (UTF-8 is not required of a long string).
    LongString(Vec<u8>),
    /// `l`: a signed 64-bit integer.
    LongLongInt(i64),
    /// `s` as the 0-9-1 spec has it: a short string (at most 255 bytes). See the module
    /// documentation: RabbitMQ reads this tag as a 16-bit integer.
    ShortString(Vec<u8>),
    /// `F`: a nested table.
    Table(Vec<(Vec<u8>, Value)>),
}

/// The basic properties this publisher can set; each as raw bytes where the protocol has
/// a short string, so that they need not be UTF-8.
#[derive(Debug, Clone, Default)]
pub struct Properties {
    pub content_type: Option<Vec<u8>>,
    /// The header table, in the order given (names as raw bytes).
    pub headers: Option<Vec<(Vec<u8>, Value)>>,
    /// 2 for persistent.
    pub delivery_mode: Option<u8>,
    pub message_id: Option<Vec<u8>>,
    pub kind: Option<Vec<u8>>,
}

impl Properties {
    /// Persistent JSON, like `heat_pipeline::ops::publish::input_properties` (without its
    /// timestamp header).
    pub fn json() -> Properties {
        Properties {
            content_type: Some(b"application/json".to_vec()),
            delivery_mode: Some(2),
            ..Properties::default()
        }
    }

    pub fn with_header(mut self, name: &[u8], value: Value) -> Properties {
        self.headers
            .get_or_insert_with(Vec::new)
            .push((name.to_vec(), value));
        self
    }
}

/// One connection with one channel, publishing.
pub struct Publisher {
    stream: TcpStream,
    /// The frame size agreed in `Tune-Ok`: the broker's own offer.
    frame_max: u32,
    /// Publisher confirms are on: each publish waits for its `Basic.Ack`.
    confirms: bool,
    /// The delivery tag the broker gives the next publish (confirm mode).
    next_tag: u64,
}

impl Publisher {
    /// Connects to `url` (`amqp://user:password@host:port/vhost`), opens channel 1 and,
    /// with `confirms`, puts it in confirm mode.
    pub async fn connect(url: &str, confirms: bool) -> io::Result<Publisher> {
        let uri: AMQPUri = url.parse().map_err(io::Error::other)?;
        let address = (uri.authority.host.as_str(), uri.authority.port);
        let mut publisher = Publisher {
            stream: TcpStream::connect(address).await?,
            frame_max: 4096, // the spec's minimum, until Tune says otherwise
            confirms,
            next_tag: 1,
        };
        publisher.stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        publisher
            .expect_method(0, (10, 10), "Connection.Start")
            .await?;

        let user = &uri.authority.userinfo;
        let mut response = vec![0];
        response.extend_from_slice(user.username.as_bytes());
        response.push(0);
        response.extend_from_slice(user.password.as_bytes());
        let mut start_ok = method(10, 11);
        let client_properties = [(
            b"product".to_vec(),
            Value::LongString(b"heat-pipeline tests raw_amqp".to_vec()),
        )];
        put_table(&mut start_ok, &client_properties);
        put_short(&mut start_ok, b"PLAIN");
        put_long(&mut start_ok, &response);
        put_short(&mut start_ok, b"en_US");
        publisher.send(FRAME_METHOD, 0, &start_ok).await?;

        let tune = publisher
            .expect_method(0, (10, 30), "Connection.Tune")
            .await?;
        let channel_max = u16::from_be_bytes([tune[0], tune[1]]);
        let frame_max = u32::from_be_bytes([tune[2], tune[3], tune[4], tune[5]]);
        let mut tune_ok = method(10, 31);
        tune_ok.extend_from_slice(&channel_max.to_be_bytes());
        tune_ok.extend_from_slice(&frame_max.to_be_bytes());
        tune_ok.extend_from_slice(&0u16.to_be_bytes()); // no heartbeat
        publisher.send(FRAME_METHOD, 0, &tune_ok).await?;
        if frame_max != 0 {
            publisher.frame_max = frame_max;
        }

        let mut open = method(10, 40);
        put_short(&mut open, uri.vhost.as_bytes());
        put_short(&mut open, b""); // reserved
        open.push(0); // reserved bit
        publisher.send(FRAME_METHOD, 0, &open).await?;
        publisher
            .expect_method(0, (10, 41), "Connection.Open-Ok")
            .await?;

        let mut channel_open = method(20, 10);
        put_short(&mut channel_open, b""); // reserved
        publisher.send(FRAME_METHOD, CHANNEL, &channel_open).await?;
        publisher
            .expect_method(CHANNEL, (20, 11), "Channel.Open-Ok")
            .await?;
        if confirms {
            let mut select = method(85, 10);
            select.push(0); // nowait off
            publisher.send(FRAME_METHOD, CHANNEL, &select).await?;
            publisher
                .expect_method(CHANNEL, (85, 11), "Confirm.Select-Ok")
                .await?;
        }
        Ok(publisher)
    }

    /// The frame size the connection runs with (the broker's).
    pub fn frame_max(&self) -> u32 {
        self.frame_max
    }

    /// Publishes `body` (mandatory); with confirms on, returns once the broker acked it.
    pub async fn publish(
        &mut self,
        exchange: &str,
        routing_key: &str,
        properties: &Properties,
        body: &[u8],
    ) -> io::Result<()> {
        let mut publish = method(60, 40);
        publish.extend_from_slice(&0u16.to_be_bytes()); // reserved
        put_short(&mut publish, exchange.as_bytes());
        put_short(&mut publish, routing_key.as_bytes());
        publish.push(0b01); // mandatory, not immediate
        self.send(FRAME_METHOD, CHANNEL, &publish).await?;

        let mut header = Vec::new();
        header.extend_from_slice(&60u16.to_be_bytes()); // class: basic
        header.extend_from_slice(&0u16.to_be_bytes()); // weight
        header.extend_from_slice(&(body.len() as u64).to_be_bytes());
        put_properties(&mut header, properties);
        // The content header is one frame whatever its size; the broker refuses one over
        // its frame_max.
        self.send(FRAME_HEADER, CHANNEL, &header).await?;
        let chunk = self.frame_max as usize - FRAME_OVERHEAD;
        for part in body.chunks(chunk) {
            self.send(FRAME_BODY, CHANNEL, part).await?;
        }
        if !self.confirms {
            return Ok(());
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        loop {
            let (channel, payload) = self.next_method().await?;
            match (channel, class_method(&payload)) {
                (CHANNEL, (60, 80)) => {
                    let acked = u64::from_be_bytes(payload[4..12].try_into().unwrap());
                    let multiple = payload[12] & 1 == 1;
                    if acked == tag || (multiple && acked >= tag) {
                        return Ok(());
                    }
                }
                (CHANNEL, (60, 50)) => {
                    // Basic.Return comes before the ack of an unroutable message.
                    return Err(io::Error::other(format!(
                        "unroutable: {}",
                        describe(&payload)
                    )));
                }
                (CHANNEL, (60, 120)) => return Err(io::Error::other("Basic.Nack")),
                _ => return Err(unexpected(channel, &payload, "Basic.Ack")),
            }
        }
    }

    /// Closes the connection cleanly (`Connection.Close`, waiting for `Close-Ok`).
    pub async fn close(mut self) -> io::Result<()> {
        let mut close = method(10, 50);
        close.extend_from_slice(&200u16.to_be_bytes());
        put_short(&mut close, b"done");
        close.extend_from_slice(&[0, 0, 0, 0]); // class and method: none
        self.send(FRAME_METHOD, 0, &close).await?;
        loop {
            // Acks still on their way may come first.
            let (channel, payload) = self.next_method().await?;
            if (channel, class_method(&payload)) == (0, (10, 51)) {
                return Ok(());
            }
        }
    }

    async fn send(&mut self, kind: u8, channel: u16, payload: &[u8]) -> io::Result<()> {
        let mut frame = Vec::with_capacity(payload.len() + FRAME_OVERHEAD);
        frame.push(kind);
        frame.extend_from_slice(&channel.to_be_bytes());
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        frame.push(FRAME_END);
        self.stream.write_all(&frame).await
    }

    /// The next method frame (heartbeats skipped): its channel and payload.
    async fn next_method(&mut self) -> io::Result<(u16, Vec<u8>)> {
        loop {
            let mut head = [0u8; 7];
            self.stream.read_exact(&mut head).await?;
            let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
            let mut payload = vec![0; size + 1];
            self.stream.read_exact(&mut payload).await?;
            if payload.pop() != Some(FRAME_END) {
                return Err(io::Error::other("frame without its end octet"));
            }
            match head[0] {
                FRAME_METHOD => return Ok((u16::from_be_bytes([head[1], head[2]]), payload)),
                FRAME_HEARTBEAT => continue,
                other => return Err(io::Error::other(format!("unexpected frame type {other}"))),
            }
        }
    }

    /// Reads the next method, which must be `expected` on `channel`; returns its arguments.
    async fn expect_method(
        &mut self,
        channel: u16,
        expected: (u16, u16),
        name: &str,
    ) -> io::Result<Vec<u8>> {
        let (got_channel, payload) = self.next_method().await?;
        if (got_channel, class_method(&payload)) != (channel, expected) {
            return Err(unexpected(got_channel, &payload, name));
        }
        Ok(payload[4..].to_vec())
    }
}

fn method(class: u16, method: u16) -> Vec<u8> {
    let mut payload = class.to_be_bytes().to_vec();
    payload.extend_from_slice(&method.to_be_bytes());
    payload
}

fn class_method(payload: &[u8]) -> (u16, u16) {
    match payload {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
        _ => (0, 0),
    }
}

/// A close or return from the broker, as "code text" (their arguments start alike).
fn describe(payload: &[u8]) -> String {
    let args = &payload[4.min(payload.len())..];
    if args.len() < 3 {
        return format!("{args:?}");
    }
    let code = u16::from_be_bytes([args[0], args[1]]);
    let len = usize::from(args[2]).min(args.len() - 3);
    format!("{code} {}", String::from_utf8_lossy(&args[3..3 + len]))
}

fn unexpected(channel: u16, payload: &[u8], wanted: &str) -> io::Error {
    let (class, method) = class_method(payload);
    let what = match (class, method) {
        (10, 50) => format!("Connection.Close {}", describe(payload)),
        (20, 40) => format!("Channel.Close {}", describe(payload)),
        _ => format!("method {class}.{method}"),
    };
    io::Error::other(format!(
        "expected {wanted}, got {what} on channel {channel}"
    ))
}

fn put_short(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u8::try_from(bytes.len()).expect("a short string is at most 255 bytes");
    out.push(len);
    out.extend_from_slice(bytes);
}

fn put_long(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_table(out: &mut Vec<u8>, fields: &[(Vec<u8>, Value)]) {
    let mut table = Vec::new();
    for (name, value) in fields {
        put_short(&mut table, name);
        match value {
            Value::LongString(bytes) => {
                table.push(b'S');
                put_long(&mut table, bytes);
            }
            Value::LongLongInt(n) => {
                table.push(b'l');
                table.extend_from_slice(&n.to_be_bytes());
            }
            Value::ShortString(bytes) => {
                table.push(b's');
                put_short(&mut table, bytes);
            }
            Value::Table(fields) => {
                table.push(b'F');
                put_table(&mut table, fields);
            }
        }
    }
    put_long(out, &table);
}

/// The property flags and the properties present, in the protocol's order: each property
/// has its flag bit (15 for the first, content-type) and is written only when present.
fn put_properties(out: &mut Vec<u8>, properties: &Properties) {
    let short = |value: &Option<Vec<u8>>| value.as_deref().map(|v| encoded(v, put_short));
    let present = [
        (15, short(&properties.content_type)),
        (
            13,
            properties.headers.as_deref().map(|h| encoded(h, put_table)),
        ),
        (12, properties.delivery_mode.map(|mode| vec![mode])),
        (7, short(&properties.message_id)),
        (5, short(&properties.kind)),
    ];
    let mut flags = 0u16;
    let mut values = Vec::new();
    for (bit, value) in present {
        if let Some(value) = value {
            flags |= 1 << bit;
            values.extend(value);
        }
    }
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&values);
}

/// `value` as `put` writes it, in bytes of its own.
fn encoded<T: ?Sized>(value: &T, put: fn(&mut Vec<u8>, &T)) -> Vec<u8> {
    let mut bytes = Vec::new();
    put(&mut bytes, value);
    bytes
}
