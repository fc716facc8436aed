//! The store's guarded commits against a real etcd: a guess that holds commits in one
//! request, a wrong one writes nothing and returns the keys as they stand, and a batch that
//! mixes both answers each decision on its own.

use std::time::Duration;

use crate::helpers::{services, unique_name};
use heat_pipeline::plan::{Snapshot, Write};
use heat_pipeline::stages::StageName;
use heat_pipeline::store::{BatchedStore, Commit, Store, StoreConfig};

/// A store on the shared etcd, and a key prefix of the test's own.
async fn store() -> (Store, String) {
    let services = services().await;
    let config = StoreConfig::new(services.etcd_endpoints.clone(), Duration::from_secs(5));
    let store = Store::connect(&config).await.expect("connect to etcd");
    (store, format!("/{}", unique_name("store")))
}

fn put(key: &str, value: &[u8]) -> Write {
    Write::Put {
        key: key.to_string(),
        value: value.to_vec(),
    }
}

fn absent(key: &str) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.assume_absent(key.to_string());
    snapshot
}

fn holding(key: &str, value: &[u8]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    snapshot.assume(key.to_string(), value.to_vec());
    snapshot
}

#[tokio::test]
async fn a_wrong_guess_writes_nothing_and_returns_the_keys_as_they_stand() {
    let (store, prefix) = store().await;
    let key = format!("{prefix}/a");

    // Guessed absent, and it is: applied.
    let applied = store.commit(&absent(&key), &[put(&key, b"one")]).await;
    assert_eq!(applied.unwrap(), Commit::Applied);

    // Guessed absent again: refused, with what is there and its revision.
    let Commit::Changed(found) = store
        .commit(&absent(&key), &[put(&key, b"two")])
        .await
        .unwrap()
    else {
        panic!("a wrong guess was applied");
    };
    assert_eq!(found.value(&key), Some(&b"one"[..]));
    assert!(!found.is_guess());
    assert!(!absent(&key).holds_in(&found));

    // Guessed by value: a wrong value is refused, the right one applies.
    let wrong = store
        .commit(&holding(&key, b"uno"), &[put(&key, b"two")])
        .await;
    assert!(matches!(wrong.unwrap(), Commit::Changed(_)));
    let right = store
        .commit(&holding(&key, b"one"), &[put(&key, b"two")])
        .await;
    assert_eq!(right.unwrap(), Commit::Applied);

    // What a refused commit returned guards by revision: stale now, so refused too.
    assert!(matches!(
        store.commit(&found, &[put(&key, b"three")]).await.unwrap(),
        Commit::Changed(_)
    ));
    let Commit::Changed(now) = store.commit(&absent(&key), &[]).await.unwrap() else {
        panic!("a read-only commit on a wrong guess passed");
    };
    assert_eq!(now.value(&key), Some(&b"two"[..]));
    assert_eq!(
        store.commit(&now, &[put(&key, b"three")]).await.unwrap(),
        Commit::Applied
    );
}

#[tokio::test]
async fn a_batch_answers_each_decision_on_its_own() {
    let (store, prefix) = store().await;
    let taken: Vec<String> = (0..10).map(|i| format!("{prefix}/taken/{i}")).collect();
    for key in &taken {
        store
            .commit(&absent(key), &[put(key, b"old")])
            .await
            .unwrap();
    }
    let batched = BatchedStore::new(store.clone(), StageName::Capture, 1 << 20, 64);

    // 40 guesses that hold and 10 that do not, in flight at once so that they share
    // transactions.
    let fresh: Vec<String> = (0..40).map(|i| format!("{prefix}/fresh/{i}")).collect();
    let commits = fresh.iter().chain(&taken).map(|key| {
        let batched = batched.clone();
        async move {
            let result = batched.commit(absent(key), vec![put(key, b"new")]).await;
            (key.clone(), result.expect("etcd answers"))
        }
    });
    let results = futures_util::future::join_all(commits).await;

    for (key, result) in results {
        let now = store.get(&key, None).await.unwrap().expect("present");
        if fresh.contains(&key) {
            assert_eq!(result, Commit::Applied, "{key}");
            assert_eq!(now.value, b"new", "{key}");
        } else {
            let Commit::Changed(found) = result else {
                panic!("{key}: a wrong guess was applied");
            };
            assert_eq!(found.value(&key), Some(&b"old"[..]), "{key}");
            assert_eq!(now.value, b"old", "{key}");
        }
    }
}
