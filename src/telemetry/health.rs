//! Readiness: a process is ready while every stage it runs has a broker session and etcd
//! answers. Liveness is simply "the HTTP server answers".
//!
//! `/readyz` and the `heat_pipeline_ready` gauge read the same flags, so an alert on the
//! gauge fires on an etcd outage as `/readyz` does. Who sets the flags is the wiring's
//! business (the runners set their stage's, `app`'s probe sets etcd's): this module knows
//! no adapter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::events::Readiness;
use crate::stages::StageName;

/// Shared readiness flags, set by the runners and the store probe, read by `/readyz`.
#[derive(Debug, Default)]
pub struct Health {
    /// One flag per stage run by this process: its broker session is up.
    brokers: Mutex<Vec<(StageName, Arc<AtomicBool>)>>,
    /// etcd answered the last probe.
    store: Arc<AtomicBool>,
}

impl Health {
    /// Registers a stage; its flag starts down.
    pub fn stage(&self, stage: StageName) -> StageHealth {
        let flag = Arc::new(AtomicBool::new(false));
        self.brokers
            .lock()
            .expect("not poisoned")
            .push((stage, flag.clone()));
        let health = StageHealth {
            stage,
            broker: flag,
            store: self.store.clone(),
        };
        health.emit();
        health
    }

    /// Records whether etcd answered, and updates every stage's gauge when that changed.
    pub fn set_store(&self, up: bool) {
        if self.store.swap(up, Ordering::Relaxed) == up {
            return;
        }
        for (stage, broker) in self.brokers.lock().expect("not poisoned").iter() {
            Readiness {
                stage: *stage,
                ready: up && broker.load(Ordering::Relaxed),
            }
            .emit();
        }
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
}

/// One stage's broker flag, held by its runner.
#[derive(Debug, Clone)]
pub struct StageHealth {
    stage: StageName,
    broker: Arc<AtomicBool>,
    store: Arc<AtomicBool>,
}

impl StageHealth {
    pub fn set(&self, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
        self.emit();
    }

    /// The gauge says what `/readyz` says of this stage: broker session and etcd both up.
    fn emit(&self) {
        Readiness {
            stage: self.stage,
            ready: self.broker.load(Ordering::Relaxed) && self.store.load(Ordering::Relaxed),
        }
        .emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_every_broker_session_and_etcd() {
        let health = Health::default();
        let capture = health.stage(StageName::Capture);
        assert!(!health.readiness().0);
        capture.set(true);
        assert_eq!(health.readiness().1, ["etcd: not answering"]);
        health.set_store(true);
        assert_eq!(health.readiness(), (true, vec![]));
        capture.set(false);
        assert_eq!(health.readiness().1, ["capture: no broker session"]);
    }
}
