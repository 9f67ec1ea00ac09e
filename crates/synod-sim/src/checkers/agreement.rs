//! Uniform agreement: no two decisions for one slot (or one instance)
//! differ, whoever makes or repeats them, across every learner and every
//! restart.

use super::{Check, Violation};
use std::collections::BTreeMap;
use synod_core::{RoleId, Slot, Value};

/// The first decision seen for each slot and instance, and who made it.
#[derive(Debug, Default)]
pub struct Agreement {
    slots: BTreeMap<Slot, (Value, RoleId)>,
    instances: BTreeMap<String, (Vec<u8>, RoleId)>,
}

impl Agreement {
    /// `who` claims `slot` is decided with `value` (a Decided it sent, or a
    /// decision a learner persisted).
    pub fn decided_slot(&mut self, who: RoleId, slot: Slot, value: &Value) -> Check {
        match self.slots.get(&slot) {
            None => {
                self.slots.insert(slot, (value.clone(), who));
                Ok(())
            }
            Some((first, _)) if first == value => Ok(()),
            Some((first, first_who)) => Err(Violation::new(
                "agreement",
                format!("slot {slot}: {first_who} decided {first:?} but {who} decided {value:?}"),
            )),
        }
    }

    /// `who` claims instance `name` is decided with `value`.
    pub fn decided_instance(&mut self, who: RoleId, name: &str, value: &[u8]) -> Check {
        match self.instances.get(name) {
            None => {
                self.instances
                    .insert(name.to_owned(), (value.to_vec(), who));
                Ok(())
            }
            Some((first, _)) if first == value => Ok(()),
            Some((first, first_who)) => Err(Violation::new(
                "agreement",
                format!(
                    "instance {name:?}: {first_who} decided {first:?} but {who} decided {value:?}"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::{Command, CommandId};

    fn batch(client: u64) -> Value {
        Value::batch(vec![Command {
            id: CommandId { client, seq: 0 },
            payload: vec![],
        }])
    }

    #[test]
    fn repeated_identical_decisions_pass() {
        let mut a = Agreement::default();
        assert!(a.decided_slot(RoleId::proposer(1), 0, &batch(1)).is_ok());
        assert!(a.decided_slot(RoleId::learner(2), 0, &batch(1)).is_ok());
        assert!(a.decided_slot(RoleId::learner(2), 1, &Value::Noop).is_ok());
        assert!(a.decided_instance(RoleId::proposer(1), "x", b"a").is_ok());
        assert!(a.decided_instance(RoleId::learner(1), "x", b"a").is_ok());
    }

    #[test]
    fn negative_control_conflicting_decisions_are_caught() {
        let mut a = Agreement::default();
        a.decided_slot(RoleId::proposer(1), 0, &batch(1)).unwrap();
        assert!(a.decided_slot(RoleId::proposer(2), 0, &batch(2)).is_err());
        a.decided_instance(RoleId::proposer(1), "x", b"a").unwrap();
        assert!(a.decided_instance(RoleId::proposer(2), "x", b"b").is_err());
    }
}
