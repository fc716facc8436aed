//! Settings shared by every command (design section 7): each is an environment variable
//! and a flag.

use std::time::Duration;

use clap::Args;

use crate::amqp::Topology;
use crate::keys::Keyspace;

/// The broker and store a process talks to, and the names that isolate one pipeline.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// RabbitMQ URL [default: amqp://guest:****@127.0.0.1:5672/%2f]. Secret: prefer the
    /// environment variable to the flag, which other users can see in the process list.
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

    /// Prefix of every exchange and queue name.
    #[arg(
        long,
        env = "PIPELINE_NAME",
        default_value = "heat-pipeline",
        global = true
    )]
    pub pipeline_name: String,

    /// Prepended to every etcd key, to isolate tests and tenants.
    #[arg(long, env = "ETCD_KEY_PREFIX", default_value = "", global = true)]
    pub etcd_key_prefix: String,

    /// The API segment of the keys.
    #[arg(long, env = "ETCD_API_VERSION", default_value = "v2.0", global = true)]
    pub etcd_api_version: String,

    /// Timeout of each etcd request; a request that takes longer is retried.
    #[arg(long, env = "ETCD_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    pub etcd_timeout: Duration,

    /// Deliveries of one message before the broker dead-letters it (x-delivery-limit).
    /// Every process of a pipeline must use the same value.
    #[arg(long, env = "DELIVERY_LIMIT", default_value_t = 20, global = true)]
    pub delivery_limit: u32,
}

impl Settings {
    pub fn topology(&self) -> Topology {
        Topology::new(self.pipeline_name.clone(), self.delivery_limit)
    }

    pub fn keyspace(&self) -> Keyspace {
        Keyspace::new(self.etcd_key_prefix.clone(), self.etcd_api_version.clone())
    }
}
