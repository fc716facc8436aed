//! [`Connection`]: where the broker and etcd are, and how long etcd may take.

use std::fmt;
use std::time::Duration;

use clap::Args;

/// Where the broker and etcd are, and how long etcd may take.
#[derive(Clone, Args)]
pub struct Connection {
    /// RabbitMQ URL (default amqp://guest:****@127.0.0.1:5672/%2f); the nodes of a cluster
    /// as several URLs separated by commas, tried in a random order. A password in it is
    /// refused on the command line: set AMQP_URL in the environment, or AMQP_PASSWORD_FILE.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_default_value = true,
        hide_env_values = true,
        global = true
    )]
    pub amqp_url: String,

    /// etcd endpoints, comma-separated.
    #[arg(
        long,
        env = "ETCD_ENDPOINTS",
        default_value = "http://127.0.0.1:2379",
        value_delimiter = ',',
        global = true
    )]
    pub etcd_endpoints: Vec<String>,

    /// Timeout of each etcd request; a request that takes longer is retried.
    #[arg(long, env = "ETCD_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub etcd_timeout: Duration,
}

/// By hand, to mask the password of `amqp_url`.
impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("amqp_url", &crate::amqp::redact_url(&self.amqp_url))
            .field("etcd_endpoints", &self.etcd_endpoints)
            .field("etcd_timeout", &self.etcd_timeout)
            .finish()
    }
}
