//! Seeding a new cluster from a backup (`synod snapshot restore`).
//!
//! A backup is one learner's snapshot file, consistent at slot `upto`
//! (taken with `synod snapshot save` through a client port). Restoring it
//! into a new cluster's empty data directories gives:
//!
//! - every learner the file, verified and installed as its latest
//!   snapshot: it starts from it and delivers from `upto` on;
//! - every acceptor a trim point and chosen watermark of `upto`: the first
//!   leader's phase 1 learns that everything below `upto` is chosen and
//!   proposes from `upto` on, so no command of the new cluster lands in a
//!   slot the learners skip.
//!
//! Every role's store is created and stamped here, so the new nodes start
//! without `--init`. Only empty role directories are written: a restore never mixes a backup
//! into a cluster's existing state.

use crate::config::SynodConfig;
use crate::node::{NodeError, random_u64};
use std::path::Path;
use synod_core::{AcceptorWrite, Role, RoleId, Slot};
use synod_storage::{
    AcceptorStore, Backend, Bootstrap, Snapshot, StorageError, open_stamped, role_dir,
};

/// What a restore wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The backup covers every slot below this one.
    pub upto: Slot,
    /// The role instances seeded, with their node.
    pub roles: Vec<(String, RoleId)>,
}

/// [`restore_backup`] into RocksDB stores, as `synod node` opens them.
pub fn restore_backup_on_disk(
    config: &SynodConfig,
    nodes: &[String],
    backup: &Path,
) -> Result<Restored, NodeError> {
    restore_backup(config, nodes, backup, &synod_rocks::RocksBackend)
}

/// Seed the data directories of `nodes` (every node of `config` if empty)
/// from the backup file `backup`, through `backend`.
pub fn restore_backup<B: Backend>(
    config: &SynodConfig,
    nodes: &[String],
    backup: &Path,
    backend: &B,
) -> Result<Restored, NodeError> {
    let names: Vec<String> = if nodes.is_empty() {
        config.nodes.keys().cloned().collect()
    } else {
        nodes.to_vec()
    };
    let mut targets = Vec::new();
    for name in &names {
        let node = config.nodes.get(name).ok_or_else(|| {
            NodeError::UnknownNode(name.clone(), config.nodes.keys().cloned().collect())
        })?;
        for role in config.roles_on(name) {
            refuse_existing(&node.data_dir, role, backend)?;
            targets.push((name.clone(), node.data_dir.clone(), role));
        }
    }
    let mut upto = None;
    for (_, data_dir, role) in &targets {
        if role.role != Role::Learner {
            continue;
        }
        let dir = backend
            .snapshots(data_dir, *role)?
            .ok_or_else(|| NodeError::Snapshot {
                role: *role,
                reason: "this storage backend keeps no snapshots".into(),
            })?;
        upto = Some(dir.import(backup)?.upto);
    }
    let upto = match upto {
        Some(upto) => upto,
        None => Snapshot::verify_file(backup)?.upto,
    };
    // Restoring creates the new cluster's stores: each is stamped here, so
    // the nodes start on them without --init.
    for (name, data_dir, role) in &targets {
        let owner = crate::node::store_owner(config, name, *role);
        let (mut store, _) = open_stamped(backend, data_dir, &owner, Bootstrap::New, random_u64())?;
        if role.role == Role::Acceptor {
            store.write_acceptor(&[AcceptorWrite::Chosen(upto), AcceptorWrite::Trim(upto)])?;
        }
    }
    let roles = targets.into_iter().map(|(n, _, r)| (n, r)).collect();
    Ok(Restored { upto, roles })
}

/// A role whose store or snapshots already hold anything is not seeded.
fn refuse_existing<B: Backend>(
    data_dir: &Path,
    role: RoleId,
    backend: &B,
) -> Result<(), NodeError> {
    let store = role_dir(data_dir, role);
    let occupied = std::fs::read_dir(&store).is_ok_and(|mut d| d.next().is_some());
    let snapshot = match backend.snapshots(data_dir, role)? {
        Some(dir) => dir.latest()?.is_some(),
        None => false,
    };
    if !occupied && !snapshot {
        return Ok(());
    }
    Err(NodeError::Storage(StorageError::DataDir {
        path: store,
        reason: "already holds data: a backup seeds only a new cluster's empty data \
                 directories"
            .into(),
    }))
}
