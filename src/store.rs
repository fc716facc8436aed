//! The etcd adapter: the only module that talks to etcd.
//!
//! Every write is a transaction guarded on the `mod_revision` of each key the decision was
//! based on. A write that timed out may or may not have been applied; repeating it is safe
//! because the repeat either finds the keys unchanged (and applies) or changed (and the
//! stage decides again, usually "duplicate").

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, Txn, TxnOp, TxnOpResponse,
};

use crate::error::{RejectKind, Rejection, StepError, Transient};
use crate::plan::{Snapshot, Stored, Write};

/// A cheap-to-clone handle on etcd; clones share one HTTP/2 connection.
#[derive(Clone)]
pub struct Store {
    kv: KvClient,
}

impl Store {
    /// Creates the client. etcd-client has no retries of its own, so every request gets
    /// `timeout`: a request that hangs becomes a [`Transient`] error the caller retries.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Store, Transient> {
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(10), timeout);
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| {
                Transient(format!(
                    "cannot connect to etcd at {}: {e}",
                    endpoints.join(",")
                ))
            })?;
        Ok(Store {
            kv: client.kv_client(),
        })
    }

    /// Reads `keys` at one revision (one transaction of range requests).
    pub async fn read(&self, keys: &[String]) -> Result<Snapshot, Transient> {
        let gets = keys
            .iter()
            .map(|k| TxnOp::get(k.as_str(), None))
            .collect::<Vec<_>>();
        let response = self
            .kv
            .clone()
            .txn(Txn::new().and_then(gets))
            .await
            .map_err(|e| Transient(format!("etcd read failed: {e}")))?;
        let mut snapshot = Snapshot::default();
        for (key, op) in keys.iter().zip(response.op_responses()) {
            let TxnOpResponse::Get(get) = op else {
                return Err(Transient(format!(
                    "etcd answered a read of {key} with {op:?}"
                )));
            };
            let stored = get.kvs().first().map(|kv| Stored {
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision(),
            });
            snapshot.insert(key.clone(), stored);
        }
        Ok(snapshot)
    }

    /// Applies `writes` only if every key in `snapshot` is as it was read. Returns `false`
    /// when something changed in between (another process got there first).
    pub async fn commit(&self, snapshot: &Snapshot, writes: &[Write]) -> Result<bool, StepError> {
        let guards = snapshot
            .guards()
            .map(|(key, revision)| Compare::mod_revision(key, CompareOp::Equal, revision))
            .collect::<Vec<_>>();
        let ops = writes
            .iter()
            .map(|w| match w {
                Write::Put { key, value } => TxnOp::put(key.as_str(), value.as_slice(), None),
                Write::Delete { key } => TxnOp::delete(key.as_str(), None),
            })
            .collect::<Vec<_>>();
        let response = self
            .kv
            .clone()
            .txn(Txn::new().when(guards).and_then(ops))
            .await
            .map_err(classify_write_error)?;
        Ok(response.succeeded())
    }

    /// Reads one key, now or as it was at `revision` (for `show`).
    pub async fn get(&self, key: &str, revision: Option<i64>) -> Result<Option<Stored>, Transient> {
        let options = revision.map(|r| GetOptions::new().with_revision(r));
        let response = self
            .kv
            .clone()
            .get(key, options)
            .await
            .map_err(|e| Transient(format!("etcd read of {key} failed: {e}")))?;
        Ok(response.kvs().first().map(|kv| Stored {
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }))
    }
}

/// etcd refuses an oversized request with a status no retry can change; everything else
/// (unavailable, timed out, no leader, connection reset) may pass.
fn classify_write_error(error: etcd_client::Error) -> StepError {
    match &error {
        etcd_client::Error::GRpcStatus(status)
            if status.message().contains("too large")
                || status.message().contains("message length") =>
        {
            Rejection::new(
                RejectKind::RecordTooLarge,
                format!("etcd refused the write: {}", status.message()),
            )
            .into()
        }
        _ => Transient(format!("etcd write failed: {error}")).into(),
    }
}
