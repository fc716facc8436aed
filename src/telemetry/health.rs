//! Readiness: a process is ready while every stage it runs has a broker session and etcd
//! answers. Liveness is simply "the HTTP server answers".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::events::Readiness;
use crate::stages::StageName;
use crate::store::Store;

/// Shared readiness flags, set by the runners and the store probe, read by `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    /// One flag per stage run by this process: its broker session is up.
    brokers: std::sync::Mutex<Vec<(StageName, Arc<AtomicBool>)>>,
    /// etcd answered the last probe.
    store: AtomicBool,
}

impl Health {
    /// Registers a stage; its flag starts down.
    pub fn stage(&self, stage: StageName) -> StageHealth {
        let flag = Arc::new(AtomicBool::new(false));
        self.brokers
            .lock()
            .expect("not poisoned")
            .push((stage, flag.clone()));
        StageHealth { stage, flag }
    }

    pub fn set_store(&self, up: bool) {
        self.store.store(up, Ordering::Relaxed);
    }

    /// What `/readyz` reports: ready, and the reasons if not.
    pub fn readiness(&self) -> (bool, Vec<String>) {
        let mut down = Vec::new();
        for (stage, flag) in self.brokers.lock().expect("not poisoned").iter() {
            if !flag.load(Ordering::Relaxed) {
                down.push(format!("{stage}: no broker session"));
            }
        }
        if !self.store.load(Ordering::Relaxed) {
            down.push("etcd: not answering".into());
        }
        (down.is_empty(), down)
    }

    /// Probes etcd every `every` until `shutdown`, so that readiness follows an outage even
    /// when no message is flowing.
    pub async fn probe_store(
        self: Arc<Self>,
        store: Store,
        every: Duration,
        shutdown: CancellationToken,
    ) {
        loop {
            let up = store.get("/", None).await.is_ok();
            self.set_store(up);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

/// One stage's broker flag, held by its runner.
#[derive(Debug, Clone)]
pub struct StageHealth {
    stage: StageName,
    flag: Arc<AtomicBool>,
}

impl StageHealth {
    pub fn set(&self, up: bool) {
        self.flag.store(up, Ordering::Relaxed);
        Readiness {
            stage: self.stage,
            ready: up,
        }
        .emit();
    }
}
