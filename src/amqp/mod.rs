//! The RabbitMQ adapter: the only module that talks AMQP through lapin.
//!
//! - [`topology`]: the pipeline's exchanges and quorum queues, declared idempotently.
//! - [`config`]: how to reach the broker (`AMQP_URL`, password file, TLS), printed masked.
//! - [`connect`](mod@connect): connections and confirm channels.
//! - [`publish`]: persistent, mandatory publishing that waits for the broker's confirm.
//! - [`queues`]: passive declares for the operator commands.
//! - [`refusal`]: the broker's refusals no retry can change (login, vhost, permissions).
//! - [`headers`]: header values written and read back.

pub mod config;
pub mod connect;
pub mod headers;
pub mod publish;
pub mod queues;
pub mod refusal;
pub mod topology;

pub use config::{redact_url, AmqpConfig, Node, UrlError};
pub use connect::{confirm_channel, connect};
pub use headers::{header_str, long_string};
pub use publish::{publish_confirmed, PublishError};
pub use queues::{queue_counts, QueueCounts};
pub use refusal::Refusal;
pub use topology::Topology;
