//! The placement a node follows: the config file's `[roles]`, with the
//! roles the log moved (`synod member move`) where the latest
//! configuration puts them.
//!
//! The config file seeds the placement and stays the same on every node
//! (the handshake compares it). A move is a configuration change like any
//! other: a stop sign carries the next [`Membership`], whose `moved` lists
//! the roles placed elsewhere. Leaders announce each configuration to
//! every placed role (`EpochInfo`), and each node's router follows the
//! newest it sees: it routes to the new node, stops a role that moved
//! away before it can send anything in the new configuration, and starts
//! one that moved here. The node keeps the moves it follows in
//! `data_dir/placement.<node>.json` (written and synced before the router
//! acts on them), so a restart follows them before it hears from anyone.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use synod_core::{Membership, RoleId};

/// Put each role of `moved` on its new node in `placement` (the log
/// moves only placed roles; any other is ignored).
pub(crate) fn apply_moves(placement: &mut BTreeMap<RoleId, String>, moved: &[(RoleId, String)]) {
    for (role, node) in moved {
        if let Some(placed) = placement.get_mut(role) {
            placed.clone_from(node);
        }
    }
}

/// The roles the newest configuration a node heard of moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedRoles {
    /// That configuration's epoch (0: the config file's placement).
    pub epoch: u32,
    /// Its moved roles and their nodes, ascending by role.
    pub moved: Vec<(RoleId, String)>,
}

impl MovedRoles {
    /// What `membership` moved.
    pub fn of(membership: &Membership) -> Self {
        Self {
            epoch: membership.epoch,
            moved: membership.moved.clone(),
        }
    }

    /// Where node `node` keeps them.
    pub fn path(data_dir: &Path, node: &str) -> PathBuf {
        data_dir.join(format!("placement.{node}.json"))
    }

    /// The moves node `node` followed last (none: it never followed one).
    pub fn load(data_dir: &Path, node: &str) -> Result<Self, String> {
        let path = Self::path(data_dir, node);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not a placement record: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Keep them for node `node`: written beside the old record, synced,
    /// renamed over it, and the directory synced.
    pub fn save(&self, data_dir: &Path, node: &str) -> std::io::Result<()> {
        fs::create_dir_all(data_dir)?;
        let path = Self::path(data_dir, node);
        let temporary = path.with_extension("json.new");
        let mut file = fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)?;
        fs::File::open(data_dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::Quorums;

    #[test]
    fn moves_survive_a_restart_and_a_damaged_record_is_an_error() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        assert_eq!(
            MovedRoles::load(dir.path(), "n1"),
            Ok(MovedRoles::default())
        );
        let membership =
            Membership::initial(vec![1, 2, 3], Quorums::majority(3), vec![1, 2], vec![1])
                .with_moved(vec![(RoleId::proposer(2), "n3".into())]);
        let moves = MovedRoles::of(&membership);
        moves.save(dir.path(), "n1").expect("saved");
        assert_eq!(MovedRoles::load(dir.path(), "n1"), Ok(moves.clone()));
        assert_eq!(moves.epoch, 1);
        assert_eq!(
            MovedRoles::load(dir.path(), "n2"),
            Ok(MovedRoles::default()),
            "one record per node"
        );
        fs::write(MovedRoles::path(dir.path(), "n1"), b"{ not json").expect("written");
        let error = MovedRoles::load(dir.path(), "n1").expect_err("damaged");
        assert!(error.contains("placement.n1.json"), "{error}");
    }
}
