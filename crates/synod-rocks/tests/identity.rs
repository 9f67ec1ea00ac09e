//! Store identity through the RocksDB backend: every case of
//! `open_stamped`'s table, and a store whose directory is removed while
//! it is open.

use std::path::Path;
use synod_core::{AcceptorWrite, Ballot, RoleId};
use synod_rocks::{RocksBackend, RocksStore};
use synod_storage::{
    AcceptorStore, Backend, Bootstrap, StorageError, StoreOwner, open_stamped, role_dir,
};
use tempfile::TempDir;

fn owner(cluster: &str, node: &str, role: RoleId) -> StoreOwner {
    StoreOwner {
        cluster: cluster.into(),
        node: node.into(),
        role,
    }
}

fn open(
    dir: &Path,
    who: &StoreOwner,
    bootstrap: Bootstrap,
) -> Result<(RocksStore, u64), StorageError> {
    open_stamped(&RocksBackend, dir, who, bootstrap, 7).map(|(s, stamp)| (s, stamp.incarnation))
}

#[test]
fn a_missing_store_is_refused_unless_the_node_is_new() {
    let dir = TempDir::new().unwrap();
    let a1 = owner("c", "n1", RoleId::acceptor(1));
    let refused = open(dir.path(), &a1, Bootstrap::Existing).unwrap_err();
    assert!(matches!(refused, StorageError::Missing { .. }), "{refused}");
    let message = refused.to_string();
    assert!(
        message.contains("acceptor-1") && message.contains("--init"),
        "{message}"
    );
    assert!(
        !role_dir(dir.path(), a1.role).exists(),
        "refusing created nothing"
    );

    let (store, incarnation) = open(dir.path(), &a1, Bootstrap::New).unwrap();
    assert_eq!(incarnation, 7);
    drop(store);
    // Once created, it opens without --init, with the incarnation it got.
    let (_, again) = open_stamped(&RocksBackend, dir.path(), &a1, Bootstrap::Existing, 99).unwrap();
    assert_eq!(again.incarnation, 7);
}

#[test]
fn a_store_of_another_cluster_node_or_role_is_refused_naming_both() {
    let dir = TempDir::new().unwrap();
    let a1 = owner("old-cluster", "n1", RoleId::acceptor(1));
    let (mut store, _) = open(dir.path(), &a1, Bootstrap::New).unwrap();
    store
        .write_acceptor(&[AcceptorWrite::Promise(Ballot::new(3, 1))])
        .unwrap();
    drop(store);
    for stranger in [
        owner("new-cluster", "n1", RoleId::acceptor(1)),
        owner("old-cluster", "n2", RoleId::acceptor(1)),
    ] {
        for bootstrap in [Bootstrap::Existing, Bootstrap::New] {
            let refused = open(dir.path(), &stranger, bootstrap).unwrap_err();
            let message = refused.to_string();
            assert!(matches!(refused, StorageError::Foreign { .. }), "{message}");
            assert!(
                message.contains("\"old-cluster\"")
                    && message.contains(&format!("{:?}", stranger.node)),
                "{message}"
            );
            assert!(
                message.contains(&format!("{:?}", stranger.cluster)),
                "{message}"
            );
        }
    }
    // The rightful owner still finds its promise.
    let (store, _) = open(dir.path(), &a1, Bootstrap::Existing).unwrap();
    assert_eq!(store.load_acceptor().unwrap().promised, Ballot::new(3, 1));
}

#[test]
fn an_unstamped_store_is_refused_until_the_node_is_initialised() {
    let dir = TempDir::new().unwrap();
    let a1 = owner("c", "n1", RoleId::acceptor(1));
    // A store created but never stamped (a crash in between).
    drop(RocksBackend.open(dir.path(), a1.role).unwrap());
    assert!(RocksBackend.exists(dir.path(), a1.role));
    let refused = open(dir.path(), &a1, Bootstrap::Existing).unwrap_err();
    assert!(
        matches!(refused, StorageError::Unstamped { .. }),
        "{refused}"
    );
    open(dir.path(), &a1, Bootstrap::New).unwrap();
    open(dir.path(), &a1, Bootstrap::Existing).unwrap();
}

#[test]
fn a_store_deleted_while_open_refuses_every_later_write() {
    for wipe in ["directory", "contents", "replaced"] {
        let dir = TempDir::new().unwrap();
        let a1 = owner("c", "n1", RoleId::acceptor(1));
        let (mut store, _) = open(dir.path(), &a1, Bootstrap::New).unwrap();
        let promise = |round| [AcceptorWrite::Promise(Ballot::new(round, 1))];
        store.write_acceptor(&promise(1)).unwrap();
        let path = role_dir(dir.path(), a1.role);
        match wipe {
            "directory" => std::fs::remove_dir_all(&path).unwrap(),
            "contents" => {
                for entry in std::fs::read_dir(&path).unwrap() {
                    std::fs::remove_file(entry.unwrap().path()).unwrap();
                }
            }
            _ => {
                std::fs::remove_dir_all(&path).unwrap();
                std::fs::create_dir(&path).unwrap();
            }
        }
        let error = store.write_acceptor(&promise(2)).unwrap_err();
        assert!(
            matches!(error, StorageError::Vanished { .. }),
            "{wipe}: {error}"
        );
        // Poisoned: nothing later is acknowledged either.
        assert!(store.write_acceptor(&promise(3)).is_err(), "{wipe}");
        drop(store);
        let refused = open(dir.path(), &a1, Bootstrap::Existing).unwrap_err();
        // RocksDB may recreate some files at close: the store is then
        // unstamped rather than missing, and refused all the same.
        assert!(
            matches!(
                refused,
                StorageError::Missing { .. } | StorageError::Unstamped { .. }
            ),
            "{wipe}: after the wipe a restart must refuse, got {refused}"
        );
    }
}
