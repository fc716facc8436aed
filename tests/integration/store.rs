//! The store's guarded commits against a real etcd: a guess that holds commits in one
//! request, a wrong one writes nothing and returns the keys as they stand, and a batch that
//! mixes both answers each decision on its own.

use std::time::Duration;

use crate::helpers::{services, unique_name, SEED_INPUT};
use heat_pipeline::keys::Keyspace;
use heat_pipeline::lifecycle::Phase;
use heat_pipeline::plan::{Lineage, Outcome, Snapshot, Write};
use heat_pipeline::records::{Encoded, Order, OrderKey};
use heat_pipeline::stages::{Capture, Stage, StageName};
use heat_pipeline::store::{BatchedStore, Commit, Store, StoreConfig};

/// A store on the shared etcd, and a key prefix of the test's own.
async fn store() -> (Store, String) {
    let services = services().await;
    let config = StoreConfig::new(services.etcd_endpoints.clone(), Duration::from_secs(5));
    let store = Store::connect(&config).await.expect("connect to etcd");
    (store, format!("/{}", unique_name("store")))
}

/// A value to store, told apart by `version`: an order key, since a [`Write`] puts only
/// what the crate encodes.
fn value(version: u64) -> Encoded {
    let order = Order {
        version,
        phase: Phase::Final,
    };
    OrderKey::new(order, "test", &Lineage::default()).to_bytes()
}

fn put(key: &str, version: u64) -> Write {
    Write::Put {
        key: key.to_string(),
        value: value(version),
    }
}

fn absent(key: &str) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.assume_absent(key.to_string());
    snapshot
}

fn holding(key: &str, version: u64) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.assume(key.to_string(), value(version).into_bytes());
    snapshot
}

#[tokio::test]
async fn a_wrong_guess_writes_nothing_and_returns_the_keys_as_they_stand() {
    let (store, prefix) = store().await;
    let key = format!("{prefix}/a");

    // Guessed absent, and it is: applied.
    let applied = store.commit(&absent(&key), &[put(&key, 1)]).await;
    assert!(matches!(applied.unwrap(), Commit::Applied { .. }));

    // Guessed absent again: refused, with what is there and its revision.
    let Commit::Changed(found) = store.commit(&absent(&key), &[put(&key, 2)]).await.unwrap() else {
        panic!("a wrong guess was applied");
    };
    assert_eq!(found.value(&key), Some(&value(1)[..]));
    assert!(!found.is_guess());
    assert!(!absent(&key).holds_in(&found));

    // Guessed by value: a wrong value is refused, the right one applies.
    let wrong = store.commit(&holding(&key, 11), &[put(&key, 2)]).await;
    assert!(matches!(wrong.unwrap(), Commit::Changed(_)));
    let right = store.commit(&holding(&key, 1), &[put(&key, 2)]).await;
    assert!(matches!(right.unwrap(), Commit::Applied { .. }));

    // What a refused commit returned guards by revision: stale now, so refused too.
    assert!(matches!(
        store.commit(&found, &[put(&key, 3)]).await.unwrap(),
        Commit::Changed(_)
    ));
    let Commit::Changed(now) = store.commit(&absent(&key), &[]).await.unwrap() else {
        panic!("a read-only commit on a wrong guess passed");
    };
    assert_eq!(now.value(&key), Some(&value(2)[..]));
    assert!(matches!(
        store.commit(&now, &[put(&key, 3)]).await.unwrap(),
        Commit::Applied { .. }
    ));
}

#[tokio::test]
async fn a_batch_answers_each_decision_on_its_own() {
    let (store, prefix) = store().await;
    let taken: Vec<String> = (0..10).map(|i| format!("{prefix}/taken/{i}")).collect();
    for key in &taken {
        store.commit(&absent(key), &[put(key, 10)]).await.unwrap();
    }
    let batched = BatchedStore::new(store.clone(), StageName::Capture, 1 << 20, 64);

    // 40 guesses that hold and 10 that do not, in flight at once so that they share
    // transactions.
    let fresh: Vec<String> = (0..40).map(|i| format!("{prefix}/fresh/{i}")).collect();
    let commits = fresh.iter().chain(&taken).map(|key| {
        let batched = batched.clone();
        async move {
            let result = batched.commit(absent(key), vec![put(key, 20)]).await;
            let (commit, writes) = result.expect("etcd answers");
            // The writes come back, whatever the outcome, for the caller's cache.
            assert_eq!(writes, vec![put(key, 20)], "{key}");
            (key.clone(), commit)
        }
    });
    let results = futures_util::future::join_all(commits).await;

    for (key, result) in results {
        let now = store.get(&key, None).await.unwrap().expect("present");
        if fresh.contains(&key) {
            assert!(matches!(result, Commit::Applied { .. }), "{key}");
            assert_eq!(now.value, value(20).into_bytes(), "{key}");
        } else {
            let Commit::Changed(found) = result else {
                panic!("{key}: a wrong guess was applied");
            };
            assert_eq!(found.value(&key), Some(&value(10)[..]), "{key}");
            assert_eq!(now.value, value(10).into_bytes(), "{key}");
        }
    }
}

/// A commit cut off by an etcd election has an unknown outcome: the client cannot tell
/// whether it was applied. Repeating it is safe because it is guarded: applied before, the
/// repeat's guards fail and return the keys as they stand, on which the stage decides
/// "duplicate" and writes nothing; not applied, the repeat applies. Shown with capture's
/// real decision on the seed.
#[tokio::test]
async fn a_commit_repeated_after_an_unknown_outcome_changes_nothing() {
    let (store, prefix) = store().await;
    let stage = Capture {
        keys: Keyspace::new(prefix.clone(), "v2.0"),
    };
    let input = stage.decode(SEED_INPUT).unwrap();
    let guess = stage
        .expected(&input, &stage.reads(&input), stage.inferred(&input))
        .expect("a first version is guessed");
    let decision = stage.decide(&input, &guess, &Lineage::default()).unwrap();
    assert_eq!(decision.outcome, Outcome::Written);

    // The first attempt was applied, but its answer was lost (the election).
    let first = store.commit(&guess, &decision.writes).await.unwrap();
    assert!(matches!(first, Commit::Applied { .. }));
    let written = store.read_many(&[&stage.reads(&input)]).await.unwrap();

    // The retry, the same request again: refused, and told what is there.
    let Commit::Changed(found) = store.commit(&guess, &decision.writes).await.unwrap() else {
        panic!("a repeated commit was applied twice");
    };
    let again = stage.decide(&input, &found, &Lineage::default()).unwrap();
    assert_eq!(again.outcome, Outcome::Duplicate);
    assert!(again.writes.is_empty(), "a duplicate writes nothing");
    let now = store.read_many(&[&stage.reads(&input)]).await.unwrap();
    assert_eq!(
        now, written,
        "the records and their revisions are unchanged"
    );

    // Had the first attempt not been applied, the same retry applies.
    let other = Capture {
        keys: Keyspace::new(format!("{prefix}/other"), "v2.0"),
    };
    let input = other.decode(SEED_INPUT).unwrap();
    let guess = other
        .expected(&input, &other.reads(&input), other.inferred(&input))
        .unwrap();
    let decision = other.decide(&input, &guess, &Lineage::default()).unwrap();
    assert!(matches!(
        store.commit(&guess, &decision.writes).await.unwrap(),
        Commit::Applied { .. }
    ));
}
