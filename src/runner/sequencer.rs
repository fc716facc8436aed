//! Per-resource order within a process.
//!
//! A stage handles many messages at once, but two results for the same resource should be
//! applied in the order they were delivered: not for safety (every commit is guarded) but
//! so that a newer result is not first written and then fought over by an older one, and so
//! that one batch never holds two writes of one key. Unrelated resources never wait for
//! each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Hands out turns per key, in the order [`Sequencer::enter`] is called.
#[derive(Default)]
pub(super) struct Sequencer {
    /// For each key with a turn outstanding: the last turn's generation and the receiver
    /// the next turn will wait on. Removed when the last turn ends, so the map holds only
    /// keys in flight.
    tails: Mutex<HashMap<String, (u64, oneshot::Receiver<()>)>>,
    next_generation: Mutex<u64>,
}

/// One message's place in its key's line. Dropping it (done, failed or abandoned) lets the
/// next message of the key go.
pub(super) struct Turn {
    sequencer: Arc<Sequencer>,
    key: String,
    generation: u64,
    previous: Option<oneshot::Receiver<()>>,
    _done: oneshot::Sender<()>,
}

impl Sequencer {
    /// Takes the next turn for `key`. Must be called in delivery order (the consumer loop).
    pub(super) fn enter(self: &Arc<Self>, key: String) -> Turn {
        let generation = {
            let mut next = self.next_generation.lock().expect("not poisoned");
            *next += 1;
            *next
        };
        let (done, next_waits_on) = oneshot::channel();
        let previous = self
            .tails
            .lock()
            .expect("not poisoned")
            .insert(key.clone(), (generation, next_waits_on))
            .map(|(_, receiver)| receiver);
        Turn {
            sequencer: self.clone(),
            key,
            generation,
            previous,
            _done: done,
        }
    }

    #[cfg(test)]
    fn keys_in_flight(&self) -> usize {
        self.tails.lock().unwrap().len()
    }
}

impl Turn {
    /// Waits until every earlier message of the same key is done.
    pub(super) async fn wait(&mut self) {
        if let Some(previous) = &mut self.previous {
            // An error means the previous turn was dropped: it is done either way. The
            // receiver is kept until then, so a cancelled wait can be awaited again.
            let _ = previous.await;
            self.previous = None;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut tails = self.sequencer.tails.lock().expect("not poisoned");
        if tails
            .get(&self.key)
            .is_some_and(|(generation, _)| *generation == self.generation)
        {
            tails.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn same_key_waits_other_keys_do_not_and_the_map_empties() {
        let sequencer = Arc::new(Sequencer::default());
        let first = sequencer.enter("a".into());
        let mut second = sequencer.enter("a".into());
        let mut other = sequencer.enter("b".into());
        tokio::time::timeout(Duration::from_millis(50), other.wait())
            .await
            .expect("b does not wait for a");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), second.wait())
                .await
                .is_err(),
            "second a waits"
        );
        drop(first);
        tokio::time::timeout(Duration::from_millis(50), second.wait())
            .await
            .expect("second a goes after first");
        drop((second, other));
        assert_eq!(sequencer.keys_in_flight(), 0);
    }
}
