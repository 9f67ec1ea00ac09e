//! Validity: only a proposed value can be decided.

use super::{Check, Violation};
use std::collections::{BTreeMap, BTreeSet};
use synod_core::{CommandId, Value};

/// Remembers every proposal and checks every decision against them.
#[derive(Debug, Default)]
pub struct Validity {
    commands: BTreeMap<CommandId, Vec<u8>>,
    instance_values: BTreeMap<String, BTreeSet<Vec<u8>>>,
}

impl Validity {
    /// A client proposed `payload` under `id`.
    pub fn proposed_command(&mut self, id: CommandId, payload: &[u8]) {
        self.commands.insert(id, payload.to_vec());
    }

    /// A client proposed `value` for instance `name`.
    pub fn proposed_instance(&mut self, name: &str, value: &[u8]) {
        self.instance_values
            .entry(name.to_owned())
            .or_default()
            .insert(value.to_vec());
    }

    /// Someone claims `value` is decided for a slot.
    pub fn decided_slot(&self, value: &Value) -> Check {
        for command in value.commands() {
            if self.commands.get(&command.id) != Some(&command.payload) {
                return Err(Violation::new(
                    "validity",
                    format!("decided command {:?} was never proposed", command.id),
                ));
            }
        }
        Ok(())
    }

    /// Someone claims `value` is decided for instance `name`.
    pub fn decided_instance(&self, name: &str, value: &[u8]) -> Check {
        let proposed = self
            .instance_values
            .get(name)
            .is_some_and(|v| v.contains(value));
        if proposed {
            Ok(())
        } else {
            Err(Violation::new(
                "validity",
                format!("instance {name:?} decided {value:?}, which nobody proposed"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synod_core::Command;

    fn command(client: u64, payload: &[u8]) -> Command {
        Command {
            id: CommandId { client, seq: 0 },
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn proposed_values_and_noops_pass() {
        let mut v = Validity::default();
        v.proposed_command(CommandId { client: 1, seq: 0 }, b"a");
        v.proposed_instance("x", b"v");
        assert!(
            v.decided_slot(&Value::batch(vec![command(1, b"a")]))
                .is_ok()
        );
        assert!(v.decided_slot(&Value::Noop).is_ok());
        assert!(v.decided_instance("x", b"v").is_ok());
    }

    #[test]
    fn negative_control_unproposed_values_are_caught() {
        let mut v = Validity::default();
        v.proposed_command(CommandId { client: 1, seq: 0 }, b"a");
        v.proposed_instance("x", b"v");
        assert!(
            v.decided_slot(&Value::batch(vec![command(2, b"a")]))
                .is_err()
        );
        assert!(
            v.decided_slot(&Value::batch(vec![command(1, b"forged")]))
                .is_err()
        );
        assert!(v.decided_instance("x", b"w").is_err());
        assert!(v.decided_instance("y", b"v").is_err());
    }
}
