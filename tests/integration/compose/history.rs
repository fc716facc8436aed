//! Every write to a set of `/state` records while a fault runs, watched from a revision on:
//! a resource's version may only rise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, WatchOptions};
use tokio::task::JoinHandle;

/// What the watch has seen so far.
#[derive(Debug, Default)]
struct Seen {
    /// Each key's highest version yet.
    highest: HashMap<String, u64>,
    /// Writes that went back (an older version after a newer one, or a removal).
    went_back: Vec<String>,
    /// `/state` writes seen.
    writes: usize,
    /// The revision of the last event seen.
    revision: i64,
}

/// A watch of every key under a prefix, from a revision on, in a task of its own.
pub struct History {
    seen: Arc<Mutex<Seen>>,
    task: JoinHandle<()>,
}

impl History {
    /// Watches `prefix` from the revision after `after`. A broken watch (its member
    /// restarted) is opened again from the revision after the last event seen.
    pub fn watch(etcd: Client, prefix: String, after: i64) -> History {
        let seen = Arc::new(Mutex::new(Seen {
            revision: after,
            ..Seen::default()
        }));
        let task = tokio::spawn(follow(etcd, prefix, seen.clone()));
        History { seen, task }
    }

    /// `/state` writes seen so far.
    pub fn writes(&self) -> usize {
        self.seen.lock().unwrap().writes
    }

    /// Waits until the watch has seen revision `upto` (the last write of the keys), stops
    /// it, and returns the writes that went back.
    pub async fn finish(self, upto: i64) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.seen.lock().unwrap().revision < upto {
            assert!(
                Instant::now() < deadline,
                "the watch never reached revision {upto}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.task.abort();
        std::mem::take(&mut self.seen.lock().unwrap().went_back)
    }
}

async fn follow(mut etcd: Client, prefix: String, seen: Arc<Mutex<Seen>>) {
    loop {
        let from = seen.lock().unwrap().revision + 1;
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        if let Ok(mut stream) = etcd.watch(prefix.as_str(), Some(options)).await {
            while let Ok(Some(response)) = stream.message().await {
                let mut seen = seen.lock().unwrap();
                assert!(
                    !response.canceled(),
                    "watch canceled: {}",
                    response.cancel_reason()
                );
                for event in response.events() {
                    let Some(kv) = event.kv() else { continue };
                    seen.record(event.event_type(), kv);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Seen {
    fn record(&mut self, kind: EventType, kv: &etcd_client::KeyValue) {
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        self.revision = kv.mod_revision();
        if kind == EventType::Delete {
            self.went_back.push(format!("{key} removed"));
            return;
        }
        self.writes += 1;
        let value: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
        let Some(version) = value["version"].as_u64() else {
            self.went_back.push(format!("{key}: no version in {value}"));
            return;
        };
        let highest = self.highest.entry(key.clone()).or_default();
        if version < *highest {
            self.went_back
                .push(format!("{key}: version {highest}, then {version}"));
        }
        *highest = version.max(*highest);
    }
}
