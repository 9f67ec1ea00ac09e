//! Invariant checkers, one per safety property. The world feeds each one
//! what it observes (messages sent, writes persisted, values delivered)
//! after every event; a checker returns a [`Violation`] the moment its
//! property breaks.

mod agreement;
mod digest;
mod integrity;
mod locks;
mod promises;
mod validity;

pub use agreement::Agreement;
pub use digest::StateDigest;
pub use integrity::Integrity;
pub use locks::{LockOrder, LockView};
pub use promises::PromiseOrder;
pub use validity::Validity;

use std::fmt;

/// A broken safety property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which checker caught it.
    pub property: &'static str,
    /// What happened, for the person replaying the seed.
    pub detail: String,
}

impl Violation {
    pub(crate) fn new(property: &'static str, detail: String) -> Self {
        Self { property, detail }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.property, self.detail)
    }
}

/// Result of one observation.
pub type Check = Result<(), Violation>;
