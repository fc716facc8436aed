//! The benchmark's etcd: its compaction, and the raw put rate the pipeline's drain is
//! compared with. (A fresh private one is `tests/common/private_etcd.rs`'s.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, CompactionOptions};

/// Puts as fast as `concurrency` tasks can for `length`.
pub async fn raw_put_rate(
    etcd: &Client,
    prefix: &str,
    concurrency: usize,
    length: Duration,
) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let value = vec![b'x'; 1536];
    let deadline = Instant::now() + length;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let mut kv = etcd.kv_client();
        let (done, value, key) = (
            done.clone(),
            value.clone(),
            format!("{prefix}/raw/{worker}"),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                kv.put(key.as_str(), value.as_slice(), None)
                    .await
                    .expect("put");
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / length.as_secs_f64()
}

/// Compacts the store's history up to now (what `--auto-compaction-*` does periodically).
pub async fn compact(etcd: &Client) {
    let mut kv = etcd.kv_client();
    let revision = kv
        .get("/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    kv.compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
}
