//! Store identity: every store is stamped, once, with the cluster, node
//! and role instance it belongs to and a random incarnation, so a node
//! never adopts another's state and never comes back empty unnoticed.
//!
//! [`open_stamped`] is the one way a node opens a role's store:
//!
//! | the store is | [`Bootstrap::Existing`] | [`Bootstrap::New`] |
//! |---|---|---|
//! | missing (never created, or deleted) | refused: [`StorageError::Missing`] | created and stamped |
//! | stamped for this cluster, node and role | opened | opened |
//! | stamped for another | refused: [`StorageError::Foreign`] | refused |
//! | unstamped (an interrupted creation) | refused: [`StorageError::Unstamped`] | stamped |

use crate::error::StorageError;
use crate::store::{Backend, role_dir};
use std::fmt;
use std::path::Path;
use synod_core::RoleId;

/// Who a store belongs to, written once when it is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStamp {
    /// The cluster id.
    pub cluster: String,
    /// The node the store's role instance is placed on.
    pub node: String,
    /// The role instance.
    pub role: RoleId,
    /// Random, drawn when the store was created: a store deleted and
    /// created again has another.
    pub incarnation: u64,
}

impl StoreStamp {
    /// Whether the store belongs to `owner` (any incarnation).
    pub fn belongs_to(&self, owner: &StoreOwner) -> bool {
        self.cluster == owner.cluster && self.node == owner.node && self.role == owner.role
    }

    /// The owner part of the stamp.
    pub fn owner(&self) -> StoreOwner {
        StoreOwner {
            cluster: self.cluster.clone(),
            node: self.node.clone(),
            role: self.role,
        }
    }
}

/// Who is opening a store: the stamp it must carry, less the incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOwner {
    /// The cluster id.
    pub cluster: String,
    /// The node.
    pub node: String,
    /// The role instance.
    pub role: RoleId,
}

impl fmt::Display for StoreOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of node {:?} in cluster {:?}",
            self.role, self.node, self.cluster
        )
    }
}

/// What the operator says about a node's state when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bootstrap {
    /// The node belongs to a running cluster: every store must be there.
    /// A missing one is refused (an acceptor that came back empty would
    /// forget its promises).
    Existing,
    /// A brand-new cluster or a new member: missing stores are created.
    New,
}

/// Open the store of `owner.role` in `data_dir`, checking its stamp (see
/// the module's table). `incarnation` is used only when a store is
/// stamped now; pass a fresh random number.
pub fn open_stamped<B: Backend>(
    backend: &B,
    data_dir: &Path,
    owner: &StoreOwner,
    bootstrap: Bootstrap,
    incarnation: u64,
) -> Result<(B::Store, StoreStamp), StorageError> {
    let path = role_dir(data_dir, owner.role);
    if bootstrap == Bootstrap::Existing && !backend.exists(data_dir, owner.role) {
        return Err(StorageError::Missing {
            path,
            owner: owner.to_string(),
        });
    }
    let mut store = backend.open(data_dir, owner.role)?;
    let stamp = match backend.read_stamp(&store)? {
        Some(stamp) if stamp.belongs_to(owner) => stamp,
        Some(stamp) => {
            return Err(StorageError::Foreign {
                path,
                found: stamp.owner().to_string(),
                expected: owner.to_string(),
            });
        }
        None if bootstrap == Bootstrap::Existing => return Err(StorageError::Unstamped { path }),
        None => {
            let stamp = StoreStamp {
                cluster: owner.cluster.clone(),
                node: owner.node.clone(),
                role: owner.role,
                incarnation,
            };
            backend.write_stamp(&mut store, &stamp)?;
            stamp
        }
    };
    Ok((store, stamp))
}
