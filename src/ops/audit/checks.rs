//! Checks that keep a scan of the wrong keys from passing for a clean bill: a scan of a
//! prefix that holds nothing finds nothing wrong, and exits 0.

use crate::amqp::{self, AmqpConfig, Topology};
use crate::stages::StageName;

/// A warning for an `ETCD_KEY_PREFIX` that does not start with `/` (`tenant-a` for
/// `/tenant-a`): keys under it are valid, so every command would read (and a stage write)
/// other keys than the pipeline's without a word. `None` for an empty prefix or one that
/// starts with `/`.
pub fn prefix_warning(prefix: &str) -> Option<String> {
    if prefix.is_empty() || prefix.starts_with('/') {
        return None;
    }
    Some(format!(
        "ETCD_KEY_PREFIX {prefix:?} does not start with \"/\": the keys read are \
         {prefix}/esi-worker/..., not /{prefix}/esi-worker/...; did you mean \"/{prefix}\"?"
    ))
}

/// Whether the pipeline's queues exist on the broker (a passive declare of the capture
/// queue, which every process declares): if they do, the pipeline has run, and a scan that
/// found no key most likely read the wrong `ETCD_KEY_PREFIX` or `ETCD_API_VERSION`.
pub async fn pipeline_queues_exist(
    broker: &AmqpConfig,
    topology: &Topology,
) -> Result<bool, lapin::Error> {
    let (connection, _node) = amqp::connect(broker, "audit").await?;
    let counts = amqp::queue_counts(&connection, &topology.queue(StageName::Capture)).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(counts?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_without_its_leading_slash_is_warned_about() {
        assert_eq!(prefix_warning(""), None);
        assert_eq!(prefix_warning("/tenant-a"), None);
        let warning = prefix_warning("tenant-a").unwrap();
        assert!(warning.contains("did you mean \"/tenant-a\""), "{warning}");
    }
}
