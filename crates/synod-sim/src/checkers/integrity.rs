//! Integrity: each learner delivers each slot at most once, in order, never
//! applies a command twice, and a restarted learner re-delivers exactly what
//! it delivered before (a decided value never changes).

use super::{Check, Violation};
use std::collections::{BTreeMap, BTreeSet};
use synod_core::{CommandId, Delivery, RoleId, Slot};

#[derive(Debug, Default)]
struct Incarnation {
    next_slot: Slot,
    commands: BTreeSet<CommandId>,
    instances: BTreeSet<String>,
}

/// Per-learner delivery history.
#[derive(Debug, Default)]
pub struct Integrity {
    current: BTreeMap<RoleId, Incarnation>,
    /// What each learner delivered per slot, over all its incarnations.
    history: BTreeMap<RoleId, BTreeMap<Slot, Vec<CommandId>>>,
    /// The id each client command (by its unique payload) was applied
    /// under, anywhere: one command resubmitted in a new session after
    /// its old one expired must not be applied under both ids.
    applied_as: BTreeMap<Vec<u8>, CommandId>,
}

impl Integrity {
    /// `learner` restarted: its in-memory state machine starts empty, or
    /// restored from a snapshot of every slot below `from` (0: none).
    pub fn restarted(&mut self, learner: RoleId, from: Slot) {
        let incarnation = Incarnation {
            next_slot: from,
            ..Incarnation::default()
        };
        self.current.insert(learner, incarnation);
    }

    /// `learner` installed a peer's snapshot of every slot below `from`,
    /// holding `commands`: it continues from there, and none of those
    /// commands may be applied again.
    pub fn installed(&mut self, learner: RoleId, from: Slot, commands: &BTreeSet<CommandId>) {
        let incarnation = self.current.entry(learner).or_default();
        incarnation.next_slot = from;
        incarnation.commands = commands.clone();
    }

    /// Some learner applied `command`. Every client command has a unique
    /// payload; applying it under a second id means a session expiry let
    /// it through twice.
    pub fn applied_once(&mut self, command: &synod_core::Command) -> Check {
        let first = *self
            .applied_as
            .entry(command.payload.clone())
            .or_insert(command.id);
        if first == command.id {
            return Ok(());
        }
        Err(Violation::new(
            "integrity",
            format!(
                "command {:?} applied as {:?} and as {:?}",
                String::from_utf8_lossy(&command.payload),
                first,
                command.id
            ),
        ))
    }

    /// `learner` delivered `delivery`.
    pub fn delivered(&mut self, learner: RoleId, delivery: &Delivery) -> Check {
        let fail =
            |detail: String| Err(Violation::new("integrity", format!("{learner}: {detail}")));
        let incarnation = self.current.entry(learner).or_default();
        match delivery {
            Delivery::Slot { slot, commands, .. } => {
                if *slot != incarnation.next_slot {
                    return fail(format!(
                        "delivered slot {slot}, expected slot {}",
                        incarnation.next_slot
                    ));
                }
                incarnation.next_slot += 1;
                for command in commands {
                    if !incarnation.commands.insert(command.id) {
                        return fail(format!("applied command {:?} twice", command.id));
                    }
                }
                let ids: Vec<CommandId> = commands.iter().map(|c| c.id).collect();
                let history = self.history.entry(learner).or_default();
                match history.get(slot) {
                    Some(before) if *before != ids => fail(format!(
                        "slot {slot} delivered {ids:?} after a restart, {before:?} before"
                    )),
                    Some(_) => Ok(()),
                    None => {
                        history.insert(*slot, ids);
                        Ok(())
                    }
                }
            }
            Delivery::Instance { name, .. } => {
                if incarnation.instances.insert(name.clone()) {
                    Ok(())
                } else {
                    fail(format!("delivered instance {name:?} twice"))
                }
            }
            Delivery::SnapshotChunk(_)
            | Delivery::ServeSnapshot { .. }
            | Delivery::ReadReady { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::Command;

    const L: RoleId = RoleId::learner(1);

    fn slot(slot: Slot, clients: &[u64]) -> Delivery {
        let commands = clients
            .iter()
            .map(|c| Command {
                id: CommandId { client: *c, seq: 0 },
                payload: vec![],
            })
            .collect();
        Delivery::Slot {
            slot,
            commands,
            opened: vec![],
            expired: vec![],
            clock: None,
        }
    }

    #[test]
    fn in_order_deliveries_and_identical_replay_pass() {
        let mut i = Integrity::default();
        i.delivered(L, &slot(0, &[1])).unwrap();
        i.delivered(L, &slot(1, &[2])).unwrap();
        i.restarted(L, 0);
        i.delivered(L, &slot(0, &[1])).unwrap();
        i.delivered(L, &slot(1, &[2])).unwrap();
    }

    #[test]
    fn negative_control_skipped_or_repeated_slots_are_caught() {
        let mut i = Integrity::default();
        i.delivered(L, &slot(0, &[1])).unwrap();
        assert!(i.delivered(L, &slot(2, &[2])).is_err());
        let mut i = Integrity::default();
        i.delivered(L, &slot(0, &[1])).unwrap();
        assert!(i.delivered(L, &slot(0, &[1])).is_err());
    }

    #[test]
    fn negative_control_double_apply_is_caught() {
        let mut i = Integrity::default();
        i.delivered(L, &slot(0, &[1])).unwrap();
        assert!(i.delivered(L, &slot(1, &[1])).is_err());
    }

    #[test]
    fn negative_control_changed_value_after_restart_is_caught() {
        let mut i = Integrity::default();
        i.delivered(L, &slot(0, &[1])).unwrap();
        i.restarted(L, 0);
        assert!(i.delivered(L, &slot(0, &[2])).is_err());
    }

    #[test]
    fn negative_control_instance_delivered_twice_is_caught() {
        let mut i = Integrity::default();
        let d = Delivery::Instance {
            name: "x".into(),
            value: vec![],
        };
        i.delivered(L, &d).unwrap();
        assert!(i.delivered(L, &d).is_err());
    }
}
