//! [`Naming`]: what every process of one pipeline must agree on.

use clap::Args;

use crate::amqp::Topology;
use crate::keys::Keyspace;

/// What every process of one pipeline must agree on: the names of its queues and keys, and
/// the queues' delivery limit (a queue argument).
#[derive(Debug, Clone, Args)]
pub struct Naming {
    /// Prefix of every exchange and queue name.
    #[arg(
        long,
        env = "PIPELINE_NAME",
        default_value = "heat-pipeline",
        global = true
    )]
    pub pipeline_name: String,

    /// Prepended to every etcd key, to isolate tests and tenants; starts with "/" (e.g.
    /// /tenant-a).
    #[arg(long, env = "ETCD_KEY_PREFIX", default_value = "", global = true)]
    pub etcd_key_prefix: String,

    /// The API segment of the keys.
    #[arg(long, env = "ETCD_API_VERSION", default_value = "v2.0", global = true)]
    pub etcd_api_version: String,

    /// Deliveries of one message before the broker dead-letters it (x-delivery-limit).
    /// Every process of a pipeline must use the same value.
    #[arg(long, env = "DELIVERY_LIMIT", default_value_t = 20, global = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub delivery_limit: u32,
}

impl Naming {
    pub fn topology(&self) -> Topology {
        Topology::new(self.pipeline_name.clone(), self.delivery_limit)
    }

    pub fn keyspace(&self) -> Keyspace {
        Keyspace::new(self.etcd_key_prefix.clone(), self.etcd_api_version.clone())
    }
}
