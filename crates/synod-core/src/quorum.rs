//! Which sets of acceptors are quorums, per phase (Flexible Paxos).
//!
//! Paxos stays safe as long as every phase-1 quorum intersects every
//! phase-2 quorum: a new ballot's phase 1 then hears of every value a
//! phase-2 quorum may have chosen under an earlier ballot. Phase-2 quorums
//! need not intersect each other (one ballot has one proposer, which
//! proposes one value per slot). So a deployment may trade: smaller
//! phase-2 quorums (faster commits, fewer acceptors per write) against
//! larger phase-1 quorums (a leader change needs more acceptors up).
//!
//! - [`Quorums::Counts`]: any `phase1` acceptors for phase 1, any `phase2`
//!   for phase 2; safe when `phase1 + phase2 > n`. Majorities are the
//!   special case `n/2 + 1` for both.
//! - [`Quorums::Grid`]: the acceptors, in id order, fill rows of `columns`.
//!   Phase 2 needs every acceptor of one row; phase 1 needs one acceptor
//!   of every row, so it meets every row. With 3 × 3 acceptors both quorums
//!   are 3 of 9, where majorities are 5.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The quorum system of one set of acceptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quorums {
    /// Any `phase1` acceptors promise; any `phase2` accept.
    Counts {
        /// Acceptors whose promises start a ballot.
        phase1: usize,
        /// Acceptors whose acceptance chooses a value.
        phase2: usize,
    },
    /// Acceptors in id order, row by row, `columns` to a row: phase 2 is a
    /// whole row, phase 1 one acceptor of every row.
    Grid {
        /// Acceptors per row.
        columns: usize,
    },
}

impl Quorums {
    /// Majorities of `acceptors` for both phases (classic Paxos).
    pub fn majority(acceptors: usize) -> Self {
        let majority = acceptors / 2 + 1;
        Quorums::Counts {
            phase1: majority,
            phase2: majority,
        }
    }

    /// Why these quorums are unsafe or impossible for `acceptors`
    /// acceptors, if they are.
    pub fn check(&self, acceptors: usize) -> Result<(), String> {
        match *self {
            Quorums::Counts { phase1, phase2 } => {
                for (phase, size) in [("phase 1", phase1), ("phase 2", phase2)] {
                    if size == 0 || size > acceptors {
                        return Err(format!(
                            "a {phase} quorum of {size} is not between 1 and the {acceptors} acceptors"
                        ));
                    }
                }
                if phase1 + phase2 <= acceptors {
                    return Err(format!(
                        "phase 1 ({phase1}) + phase 2 ({phase2}) must exceed the {acceptors} acceptors, \
                         or a ballot's phase 1 can miss a value an earlier phase 2 chose"
                    ));
                }
                Ok(())
            }
            Quorums::Grid { columns } => {
                if columns == 0 || !acceptors.is_multiple_of(columns) {
                    return Err(format!(
                        "{acceptors} acceptors do not fill rows of {columns}; place a multiple of {columns}"
                    ));
                }
                Ok(())
            }
        }
    }

    /// Whether the acceptors in `answered` (indices among `acceptors`,
    /// which is in id order) complete phase 1.
    pub fn phase1(&self, acceptors: &[u32], answered: &BTreeSet<u32>) -> bool {
        match *self {
            Quorums::Counts { phase1, .. } => count(acceptors, answered) >= phase1,
            Quorums::Grid { columns } => acceptors
                .chunks(columns.max(1))
                .all(|row| row.iter().any(|a| answered.contains(a))),
        }
    }

    /// Whether the acceptors in `answered` complete phase 2 (choose).
    pub fn phase2(&self, acceptors: &[u32], answered: &BTreeSet<u32>) -> bool {
        match *self {
            Quorums::Counts { phase2, .. } => count(acceptors, answered) >= phase2,
            Quorums::Grid { columns } => acceptors
                .chunks(columns.max(1))
                .any(|row| row.iter().all(|a| answered.contains(a))),
        }
    }

    /// The most acceptors that may be down with both a phase-1 and a
    /// phase-2 quorum left, whichever ones they are: the majority's
    /// `(n - 1) / 2`; `n - max(phase1, phase2)` for counts; for a grid,
    /// one fewer than the smaller of its rows and columns.
    pub fn tolerated_failures(&self, acceptors: usize) -> usize {
        match *self {
            Quorums::Counts { phase1, phase2 } => acceptors.saturating_sub(phase1.max(phase2)),
            Quorums::Grid { columns } => {
                let rows = acceptors / columns.max(1);
                rows.min(columns).saturating_sub(1)
            }
        }
    }

    /// What phase 2 needs, for operators: "a majority is 2", "2 of 5",
    /// "a whole row of 3".
    pub fn describe_phase2(&self, acceptors: usize) -> String {
        match *self {
            Quorums::Counts { phase2, .. } if *self == Quorums::majority(acceptors) => {
                format!("a majority is {phase2}")
            }
            Quorums::Counts { phase2, .. } => format!("phase 2 needs {phase2}"),
            Quorums::Grid { columns } => format!("phase 2 needs a whole row of {columns}"),
        }
    }
}

fn count(acceptors: &[u32], answered: &BTreeSet<u32>) -> usize {
    acceptors.iter().filter(|a| answered.contains(a)).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u32]) -> BTreeSet<u32> {
        ids.iter().copied().collect()
    }

    /// Every subset of `acceptors`.
    fn subsets(acceptors: &[u32]) -> Vec<BTreeSet<u32>> {
        (0u32..1 << acceptors.len())
            .map(|mask| {
                let chosen = acceptors.iter().enumerate();
                chosen
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, a)| *a)
                    .collect()
            })
            .collect()
    }

    /// Every phase-1 quorum meets every phase-2 quorum.
    fn intersect(quorums: Quorums, acceptors: &[u32]) -> bool {
        let all = subsets(acceptors);
        let phase1 = all.iter().filter(|s| quorums.phase1(acceptors, s));
        phase1.clone().all(|q1| {
            all.iter()
                .filter(|s| quorums.phase2(acceptors, s))
                .all(|q2| !q1.is_disjoint(q2))
        })
    }

    #[test]
    fn majorities_of_three_and_five() {
        let three = [1, 2, 3];
        let majority = Quorums::majority(3);
        assert!(majority.phase1(&three, &set(&[1, 3])));
        assert!(!majority.phase2(&three, &set(&[2])));
        assert_eq!(majority.describe_phase2(3), "a majority is 2");
        assert!(intersect(Quorums::majority(5), &[1, 2, 3, 4, 5]));
    }

    #[test]
    fn answers_from_outside_the_acceptors_do_not_count() {
        assert!(!Quorums::majority(3).phase2(&[1, 2, 3], &set(&[1, 7, 8])));
    }

    #[test]
    fn every_valid_count_pair_intersects_and_every_invalid_one_is_refused() {
        let acceptors = [1, 2, 3, 4, 5];
        for phase1 in 0..=6 {
            for phase2 in 0..=6 {
                let quorums = Quorums::Counts { phase1, phase2 };
                let valid = quorums.check(5).is_ok();
                let sizes_ok = (1..=5).contains(&phase1) && (1..=5).contains(&phase2);
                assert_eq!(valid, sizes_ok && phase1 + phase2 > 5, "{quorums:?}");
                if sizes_ok {
                    // The check refuses exactly the pairs that can miss.
                    assert_eq!(intersect(quorums, &acceptors), valid, "{quorums:?}");
                }
            }
        }
    }

    #[test]
    fn a_grid_has_row_phase_two_and_transversal_phase_one() {
        let nine: Vec<u32> = (1..=9).collect();
        let grid = Quorums::Grid { columns: 3 };
        assert!(grid.check(9).is_ok());
        assert!(grid.phase2(&nine, &set(&[4, 5, 6])));
        assert!(!grid.phase2(&nine, &set(&[1, 2, 4, 5, 7, 8])));
        assert!(grid.phase1(&nine, &set(&[1, 5, 9])));
        assert!(!grid.phase1(&nine, &set(&[1, 2, 3, 4, 5, 6])));
        assert!(intersect(grid, &nine));
        assert_eq!(grid.describe_phase2(9), "phase 2 needs a whole row of 3");
    }

    /// `tolerated_failures` is exact: every set of that many acceptors
    /// down leaves both quorums, and some set of one more does not.
    #[test]
    fn tolerated_failures_is_the_largest_safe_loss() {
        let systems = [
            (3, Quorums::majority(3)),
            (5, Quorums::majority(5)),
            (
                5,
                Quorums::Counts {
                    phase1: 4,
                    phase2: 2,
                },
            ),
            (4, Quorums::Grid { columns: 2 }),
            (6, Quorums::Grid { columns: 3 }),
            (9, Quorums::Grid { columns: 3 }),
        ];
        for (n, quorums) in systems {
            let acceptors: Vec<u32> = (1..=n as u32).collect();
            let survives = |down: &BTreeSet<u32>| {
                let up: BTreeSet<u32> = acceptors
                    .iter()
                    .filter(|a| !down.contains(a))
                    .copied()
                    .collect();
                quorums.phase1(&acceptors, &up) && quorums.phase2(&acceptors, &up)
            };
            let f = quorums.tolerated_failures(n);
            let all = subsets(&acceptors);
            assert!(
                all.iter().filter(|d| d.len() == f).all(survives),
                "{n} {quorums:?}"
            );
            assert!(
                !all.iter().filter(|d| d.len() == f + 1).all(survives),
                "{n} {quorums:?}"
            );
        }
        assert_eq!(Quorums::majority(5).tolerated_failures(5), 2);
    }

    #[test]
    fn a_grid_that_does_not_fill_its_rows_is_refused() {
        let err = Quorums::Grid { columns: 2 }.check(5).unwrap_err();
        assert!(err.contains("do not fill rows of 2"), "{err}");
        assert!(Quorums::Grid { columns: 0 }.check(4).is_err());
    }
}
