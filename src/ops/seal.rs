//! `seal`: the last step of the move to the hand-off exchange (docs/OPERATIONS.md,
//! "Upgrading to 0.2"): removes the bindings through which upstream could forge hand-offs.

use crate::amqp::{self, AmqpConfig, Topology};

/// Declares the topology (so that the new bindings exist before the old ones go) and
/// removes the input exchange's bindings to the normalize and wrap queues, over one
/// connection closed before returning. Idempotent.
pub async fn seal(broker: &AmqpConfig, topology: &Topology) -> Result<(), lapin::Error> {
    let (connection, _node) = amqp::connect(broker, "seal").await?;
    let sealed = async {
        let channel = connection.create_channel().await?;
        topology.declare(&channel).await?;
        topology.seal(&channel).await
    }
    .await;
    let _ = connection.close(200, "done".into()).await;
    sealed
}
