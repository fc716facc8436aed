//! The etcd adapter: the only module that talks to etcd.
//!
//! Every write is a transaction guarded on each key the decision was based on: its
//! `mod_revision` as read, or its bytes as guessed. A write that timed out may or may not
//! have been applied; repeating it is safe because the repeat either finds the keys
//! unchanged (and applies) or changed (and the stage decides again, usually "duplicate").

use std::time::Duration;

use backoff::backoff::Backoff;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KvClient,
    TlsOptions, Txn, TxnOp, TxnOpResponse,
};

use crate::plan::{Guard, Snapshot, Stored, Write};
use crate::secrets::{Secret, TlsPem};

mod batch;
mod error;
mod unreached;

pub use batch::BatchedStore;
pub use error::{StepError, Transient};
use unreached::{classify_connect_error, Unreached};
pub use unreached::{describe_failure, ConnectError};

/// How to reach etcd: endpoints, request timeout, TLS and credentials. Built from the
/// settings by `Settings::store_config`; prints without secrets.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub endpoints: Vec<String>,
    /// Timeout of each request (and of connecting, and of the TLS handshake).
    pub timeout: Duration,
    /// CA and client certificate for `https://` endpoints; `None`: the system's roots and no
    /// client certificate.
    pub tls: Option<TlsPem>,
    /// etcd user name and password (etcd's `auth enable`).
    pub user: Option<EtcdUser>,
}

#[derive(Debug, Clone)]
pub struct EtcdUser {
    pub name: String,
    pub password: Secret,
}

impl StoreConfig {
    /// Plain endpoints, no credentials.
    pub fn new(endpoints: Vec<String>, timeout: Duration) -> StoreConfig {
        StoreConfig {
            endpoints,
            timeout,
            tls: None,
            user: None,
        }
    }

    fn uses_https(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    fn options(&self) -> ConnectOptions {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_timeout(self.timeout)
            .with_keep_alive(Duration::from_secs(10), self.timeout)
            // A member cut off from the cluster's quorum answers "no leader" at once instead
            // of holding the request until the timeout: the retry goes to another member.
            .with_require_leader(true);
        if self.uses_https() {
            let mut tls = TlsOptions::new().timeout(self.timeout);
            tls = match self.tls.as_ref().and_then(|t| t.ca.as_ref()) {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
                None => tls.with_native_roots(),
            };
            if let Some(identity) = self.tls.as_ref().and_then(|t| t.identity.as_ref()) {
                tls = tls.identity(Identity::from_pem(&identity.cert, identity.key.expose()));
            }
            options = options.with_tls(tls);
        }
        if let Some(user) = &self.user {
            // A token expires (etcd's --auth-token-ttl, 5 min by default) while a stage is
            // idle; the client then authenticates again by itself.
            options = options
                .with_user(user.name.as_str(), user.password.expose())
                .with_auto_token_refresh(true);
        }
        options
    }
}

/// A cheap-to-clone handle on etcd; clones share one HTTP/2 connection.
#[derive(Clone)]
pub struct Store {
    kv: KvClient,
}

impl Store {
    /// Creates the client. etcd-client has no retries of its own, so every request gets
    /// `config.timeout`: a request that hangs becomes a [`Transient`] error the caller
    /// retries.
    ///
    /// Without credentials this sends nothing (an unreachable etcd shows at the first
    /// request). With credentials it authenticates at once, so a wrong password is a
    /// [`ConnectError::Refused`] here, not a retry loop later.
    pub async fn connect(config: &StoreConfig) -> Result<Store, ConnectError> {
        let endpoints = config.endpoints.join(",");
        if config.user.is_some() && !config.uses_https() {
            tracing::warn!(%endpoints, "the etcd password is sent without TLS (http://)");
        }
        let client = Client::connect(&config.endpoints, Some(config.options()))
            .await
            .map_err(|e| classify_connect_error(&endpoints, config, &e))?;
        Ok(Store {
            kv: client.kv_client(),
        })
    }

    /// [`Store::connect`], then one read (of `/`, as the readiness probe reads), so that an
    /// etcd that does not answer fails here, as a [`ConnectError::Unavailable`] in one line
    /// naming ETCD_ENDPOINTS, instead of at a command's first request with the client's
    /// gRPC dump. For the operator commands, which do not wait for etcd; any answer, a
    /// refusal to read `/` included, shows that etcd is there.
    pub async fn connect_checked(config: &StoreConfig) -> Result<Store, ConnectError> {
        let store = Store::connect(config).await?;
        let options = GetOptions::new().with_count_only().with_serializable();
        if let Err(error) = store.kv.clone().get("/", Some(options)).await {
            if let Some(unreached) = Unreached::of(&error) {
                let endpoints = config.endpoints.join(",");
                let line = unreached.line(&endpoints, Some(config));
                return Err(ConnectError::Unavailable(line));
            }
        }
        Ok(store)
    }

    /// [`Store::connect`], waiting (with backoff, a log line per attempt) while etcd does not
    /// answer. Returns at once an error no retry can change (refused credentials).
    pub async fn connect_retrying(config: &StoreConfig) -> Result<Store, ConnectError> {
        let mut retry = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_millis(200))
            .with_max_interval(Duration::from_secs(10))
            .with_max_elapsed_time(None)
            .build();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            match Store::connect(config).await {
                Err(error) if error.is_transient() => {
                    tracing::warn!(attempt, %error, "cannot connect to etcd; retrying");
                    let wait = retry.next_backoff().unwrap_or(Duration::from_secs(10));
                    tokio::time::sleep(wait).await;
                }
                result => return result,
            }
        }
    }

    /// Reads several key lists in one transaction, one snapshot per list.
    ///
    /// Reads are serializable (served by the member, no quorum round trip): a stale read
    /// costs nothing but a retry, because every commit is guarded on the revisions read.
    /// etcd's size refusal is a [`StepError::Rejected`], like a write's: a key list no
    /// retry can make smaller must not be retried forever.
    pub async fn read_many(&self, key_lists: &[&[String]]) -> Result<Vec<Snapshot>, StepError> {
        let gets = key_lists
            .iter()
            .flat_map(|keys| keys.iter())
            .map(|k| TxnOp::get(k.as_str(), Some(GetOptions::new().with_serializable())))
            .collect::<Vec<_>>();
        let response = self
            .kv
            .clone()
            .txn(Txn::new().and_then(gets))
            .await
            .map_err(|e| error::classify_error("read", e))?;
        Ok(snapshots(
            response.op_responses(),
            key_lists.iter().map(|keys| keys.iter().map(String::as_str)),
        )?)
    }

    /// Applies `writes` only if every key in `snapshot` is as it was read or guessed;
    /// otherwise returns the keys as they are now.
    pub async fn commit(
        &self,
        snapshot: &Snapshot,
        writes: &[Write],
    ) -> Result<Commit<Snapshot>, StepError> {
        Ok(match self.commit_all(&[(snapshot, writes)]).await? {
            Commit::Applied { revision } => Commit::Applied { revision },
            Commit::Changed(mut found) => Commit::Changed(found.pop().expect("one snapshot")),
        })
    }

    /// Applies several decisions in one transaction, all or none. When a guard fails the
    /// same transaction reads every decision's keys instead, so the caller learns what
    /// changed without another request.
    pub async fn commit_all(
        &self,
        decisions: &[(&Snapshot, &[Write])],
    ) -> Result<Commit<Vec<Snapshot>>, StepError> {
        let guards = decisions
            .iter()
            .flat_map(|(snapshot, _)| snapshot.guards())
            .map(|(key, guard)| match guard {
                Guard::Revision(revision) => Compare::mod_revision(key, CompareOp::Equal, revision),
                Guard::Value(value) => Compare::value(key, CompareOp::Equal, value),
            })
            .collect::<Vec<_>>();
        let ops = decisions
            .iter()
            .flat_map(|(_, writes)| writes.iter())
            .map(|w| match w {
                Write::Put { key, value } => TxnOp::put(key.as_str(), &value[..], None),
                Write::Delete { key } => TxnOp::delete(key.as_str(), None),
            })
            .collect::<Vec<_>>();
        let reads = decisions
            .iter()
            .flat_map(|(snapshot, _)| snapshot.keys())
            .map(|key| TxnOp::get(key, None))
            .collect::<Vec<_>>();
        let response = self
            .kv
            .clone()
            .txn(Txn::new().when(guards).and_then(ops).or_else(reads))
            .await
            .map_err(|e| error::classify_error("write", e))?;
        if response.succeeded() {
            // Every key the transaction wrote now has this mod_revision.
            let revision = response.header().map_or(0, |h| h.revision());
            return Ok(Commit::Applied { revision });
        }
        let found = snapshots(
            response.op_responses(),
            decisions.iter().map(|(snapshot, _)| snapshot.keys()),
        )?;
        Ok(Commit::Changed(found))
    }

    /// Reads one key, now or as it was at `revision` (for `show`).
    pub async fn get(&self, key: &str, revision: Option<i64>) -> Result<Option<Stored>, Transient> {
        let options = revision.map(|r| GetOptions::new().with_revision(r));
        let response = self
            .kv
            .clone()
            .get(key, options)
            .await
            .map_err(|e| Transient::request("get", e))?;
        Ok(response.kvs().first().map(|kv| Stored {
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }))
    }
}

/// One page of a key range, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub kvs: Vec<(Vec<u8>, Stored)>,
    /// Whether keys beyond this page remain in the range.
    pub more: bool,
    /// How many keys the whole range holds (etcd counts them for every request).
    pub count: i64,
    /// The store revision the page was read at.
    pub revision: i64,
}

impl Store {
    /// Up to `limit` keys of `[start, end)` in key order, as of `revision` (or now). Scans
    /// (`audit`) call it again from just after the last key, at the first page's revision,
    /// so a whole scan sees one consistent state of the store with a page in memory.
    pub async fn range_page(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i64,
        revision: Option<i64>,
    ) -> Result<Page, Transient> {
        let mut options = GetOptions::new().with_range(end).with_limit(limit);
        if let Some(revision) = revision {
            options = options.with_revision(revision);
        }
        let response = self
            .kv
            .clone()
            .get(start, Some(options))
            .await
            .map_err(|e| Transient::request("range", e))?;
        let revision = response.header().map_or(0, |h| h.revision());
        let more = response.more();
        let count = response.count();
        let kvs = response
            .kvs()
            .iter()
            .map(|kv| {
                let stored = Stored {
                    value: kv.value().to_vec(),
                    mod_revision: kv.mod_revision(),
                };
                (kv.key().to_vec(), stored)
            })
            .collect();
        Ok(Page {
            kvs,
            more,
            count,
            revision,
        })
    }
}

/// What a guarded commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit<T> {
    /// Every guard held: the writes are in, at this revision (the `mod_revision` of every
    /// key written).
    Applied { revision: i64 },
    /// A guard failed: nothing was written; the keys as they stand now.
    Changed(T),
}

/// Splits a transaction's range responses into one snapshot per key list, in order.
fn snapshots<'a>(
    responses: Vec<TxnOpResponse>,
    key_lists: impl Iterator<Item = impl Iterator<Item = &'a str>>,
) -> Result<Vec<Snapshot>, Transient> {
    let mut responses = responses.into_iter();
    let mut snapshots = Vec::new();
    for keys in key_lists {
        let mut snapshot = Snapshot::default();
        for key in keys {
            let Some(TxnOpResponse::Get(get)) = responses.next() else {
                return Err(Transient::OddAnswer {
                    key: key.to_string(),
                });
            };
            let stored = get.kvs().first().map(|kv| Stored {
                value: kv.value().to_vec(),
                mod_revision: kv.mod_revision(),
            });
            snapshot.insert(key.to_string(), stored);
        }
        snapshots.push(snapshot);
    }
    Ok(snapshots)
}
