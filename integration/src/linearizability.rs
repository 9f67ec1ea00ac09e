//! A linearizability checker for histories of registers and locks (one
//! object per key): Wing and Gong's search with Lowe's memoisation, the
//! algorithm of Knossos and Porcupine.
//!
//! A lock's model is the KV's: a free lock is granted with a fencing token
//! larger than every token granted before, the holder is granted again
//! with the same token, anyone else is told the holder and its token, and
//! only the holder unlocks. So a history with two holders at once, or a
//! token that does not grow, is not linearizable.
//!
//! Keys are independent (every operation touches one key), so each key's
//! sub-history is checked on its own. In a sub-history, an operation
//! occupies `[invoke, complete]`; the search tries to order the operations
//! so that each takes effect at one instant inside its interval and the
//! register's sequential semantics explain every outcome. A configuration
//! (which operations have taken effect, the register's value) that has
//! failed once is never explored again.
//!
//! Operations without an answer ([`Outcome::Unknown`]) complete "at
//! infinity": they may take effect at any point after their invocation or
//! not at all (an unanswered lock takes a token nobody knows until an
//! answer shows it). Two reductions keep them cheap and change no verdict:
//! an unanswered read constrains nothing and is dropped, and so is an
//! unanswered register write whose value no answer ever showed (if a history is
//! linearizable with it, the interval where the register held its value
//! contains no observation, so removing it leaves a valid order; and any
//! order without it stays valid with it placed last).

use crate::history::{Call, Op, Outcome};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Why a history is not linearizable, or the checker gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The key whose sub-history fails.
    pub key: String,
    /// Its operations after the reductions.
    pub ops: usize,
    /// What the search found (the operation it could not place).
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {:?} ({} operations) is not linearizable: {}",
            self.key, self.ops, self.detail
        )
    }
}

/// Configurations the search may visit per key before it gives up (an
/// error, never a pass).
pub const SEARCH_LIMIT: usize = 20_000_000;

/// What a successful check covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Keys checked.
    pub keys: usize,
    /// Operations checked, after the reductions.
    pub ops: usize,
    /// Configurations the search visited.
    pub configurations: usize,
}

/// Check every key of `history`.
pub fn check(history: &[Op]) -> Result<Checked, Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut checked = Checked::default();
    for (key, ops) in by_key {
        let ops = reduce(&ops);
        let register = Register::new(&ops);
        match register.search() {
            Ok(visited) => {
                checked.keys += 1;
                checked.ops += ops.len();
                checked.configurations += visited;
            }
            Err(detail) => {
                return Err(Violation {
                    key: key.to_owned(),
                    ops: ops.len(),
                    detail,
                });
            }
        }
    }
    Ok(checked)
}

/// Drop unanswered reads, and unanswered writes whose value was never
/// observed (see the module header for why that keeps the verdict).
fn reduce<'a>(ops: &[&'a Op]) -> Vec<&'a Op> {
    let mut observed: BTreeSet<&str> = BTreeSet::new();
    for op in ops {
        match (&op.call, &op.outcome) {
            (_, Outcome::Value(Some(v)) | Outcome::CasFailed(Some(v))) => {
                observed.insert(v);
            }
            (
                Call::Cas {
                    expected: Some(v), ..
                },
                Outcome::Done,
            ) => {
                observed.insert(v);
            }
            _ => {}
        }
    }
    let written = |op: &Op| match &op.call {
        Call::Put(v) | Call::Cas { new: v, .. } => Some(v.clone()),
        Call::Get | Call::ReadIndexGet | Call::Lock(_) | Call::Unlock(_) => None,
    };
    ops.iter()
        .copied()
        .filter(|op| match (&op.call, &op.outcome) {
            (Call::Lock(_) | Call::Unlock(_), _) => true,
            (_, Outcome::Unknown) => written(op).is_some_and(|v| observed.contains(v.as_str())),
            _ => true,
        })
        .collect()
}

/// An interned string: `0` for none (an absent value, a free lock).
type Value = u32;

/// The object's state: a register's value, or a lock's holder, its token
/// (`0` while unknown: granted by an unanswered lock) and the largest
/// token granted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct State {
    value: Value,
    token: u64,
    max_token: u64,
}

impl State {
    fn holding(self, owner: Value, token: u64) -> Self {
        Self {
            value: owner,
            token,
            max_token: self.max_token.max(token),
        }
    }

    fn free(self) -> Self {
        Self {
            value: 0,
            token: 0,
            ..self
        }
    }

    /// The lock is `owner`'s with `token`: true if so, filling in a token
    /// that was unknown (it must then be larger than any before).
    fn held_as(self, owner: Value, token: u64) -> Option<Self> {
        match (self.value == owner, self.token) {
            (true, t) if t == token => Some(self),
            (true, 0) if token > self.max_token => Some(self.holding(owner, token)),
            _ => None,
        }
    }
}

/// One operation, interned.
#[derive(Clone, Copy, Debug)]
enum Step {
    Put(Value),
    Read(Value),
    CasDone {
        expected: Value,
        new: Value,
    },
    CasRefused {
        expected: Value,
        current: Value,
    },
    /// An unanswered compare-and-set: sets `new` if the value is
    /// `expected`, else leaves it.
    CasMaybe {
        expected: Value,
        new: Value,
    },
    Granted {
        owner: Value,
        token: u64,
    },
    Held {
        caller: Value,
        owner: Value,
        token: u64,
    },
    /// An unanswered lock: granted (token unknown) if free.
    LockMaybe {
        owner: Value,
    },
    Unlocked {
        owner: Value,
    },
    NotOwner {
        caller: Value,
        holder: Value,
    },
    /// An unanswered unlock: released if `owner` holds it.
    UnlockMaybe {
        owner: Value,
    },
}

impl Step {
    /// The object after this step from `state`, if the step's outcome is
    /// possible there.
    fn apply(self, state: State) -> Option<State> {
        let value = |v: Value| State { value: v, ..state };
        match self {
            Step::Put(v) => Some(value(v)),
            Step::Read(v) => (state.value == v).then_some(state),
            Step::CasDone { expected, new } => (state.value == expected).then_some(value(new)),
            Step::CasRefused { expected, current } => {
                (state.value == current && state.value != expected).then_some(state)
            }
            Step::CasMaybe { expected, new } => Some(if state.value == expected {
                value(new)
            } else {
                state
            }),
            Step::Granted { owner, token } if state.value == 0 => {
                (token > state.max_token).then(|| state.holding(owner, token))
            }
            Step::Granted { owner, token } => state.held_as(owner, token),
            Step::Held {
                caller,
                owner,
                token,
            } => (owner != caller)
                .then(|| state.held_as(owner, token))
                .flatten(),
            Step::LockMaybe { owner } if state.value == 0 => Some(state.holding(owner, 0)),
            Step::LockMaybe { .. } => Some(state),
            Step::Unlocked { owner } => (state.value == owner).then(|| state.free()),
            Step::NotOwner { caller, holder } => {
                (state.value == holder && holder != caller).then_some(state)
            }
            Step::UnlockMaybe { owner } if state.value == owner => Some(state.free()),
            Step::UnlockMaybe { .. } => Some(state),
        }
    }
}

/// One key's sub-history, ready for the search.
struct Register {
    steps: Vec<Step>,
    definite: Vec<bool>,
    /// Call and return events in time order: (operation, is the call).
    events: Vec<(usize, bool)>,
    described: Vec<String>,
}

impl Register {
    fn new(ops: &[&Op]) -> Self {
        let mut names: HashMap<String, Value> = HashMap::new();
        let mut intern = |v: &Option<String>| -> Value {
            match v {
                None => 0,
                Some(v) => {
                    let next = names.len() as Value + 1;
                    *names.entry(v.clone()).or_insert(next)
                }
            }
        };
        let mut steps = Vec::with_capacity(ops.len());
        for op in ops {
            let step = step(op, &mut intern);
            steps.push(step);
        }
        let mut timed: Vec<(u128, u8, usize, bool)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            let end = match op.outcome {
                Outcome::Unknown => u128::MAX,
                _ => op.complete.as_nanos(),
            };
            // At equal times calls come first: overlapping is the lenient reading.
            timed.push((op.invoke.as_nanos(), 0, i, true));
            timed.push((end, 1, i, false));
        }
        timed.sort_unstable();
        Self {
            steps,
            definite: ops.iter().map(|o| o.outcome != Outcome::Unknown).collect(),
            events: timed.into_iter().map(|(_, _, i, c)| (i, c)).collect(),
            described: ops.iter().map(|o| describe(o)).collect(),
        }
    }

    /// Wing–Gong–Lowe: walk the event list; at a call, try to linearize
    /// that operation now; at a return of an operation not yet
    /// linearized, undo the most recent choice. Ok: configurations visited.
    fn search(&self) -> Result<usize, String> {
        let mut list = EventList::new(&self.events);
        let definite_total = self.definite.iter().filter(|d| **d).count();
        let mut done = Bits::new(self.steps.len());
        let mut definite_done = 0;
        let mut state = State::default();
        let mut stack: Vec<(usize, State)> = Vec::new();
        let mut seen: HashSet<(Bits, State)> = HashSet::new();
        let mut stuck_at = None;
        let mut entry = list.first();
        while definite_done < definite_total {
            let (op, is_call) = self.events[entry];
            if is_call {
                if let Some(next) = self.steps[op].apply(state) {
                    let mut after = done.clone();
                    after.set(op, true);
                    if seen.insert((after.clone(), next)) {
                        if seen.len() > SEARCH_LIMIT {
                            return Err(format!("gave up after {SEARCH_LIMIT} configurations"));
                        }
                        stack.push((op, state));
                        (state, done) = (next, after);
                        definite_done += usize::from(self.definite[op]);
                        list.lift(op);
                        entry = list.first();
                        continue;
                    }
                }
                entry = list.next(entry);
            } else {
                if stuck_at.is_none_or(|(depth, _)| stack.len() > depth) {
                    stuck_at = Some((stack.len(), op));
                }
                let Some((undone, before)) = stack.pop() else {
                    let (depth, op) = stuck_at.expect("set above");
                    return Err(format!(
                        "after at best {depth} operations in order, none explains {}",
                        self.described[op]
                    ));
                };
                state = before;
                done.set(undone, false);
                definite_done -= usize::from(self.definite[undone]);
                list.unlift(undone);
                entry = list.next(list.call_of(undone));
            }
        }
        Ok(seen.len())
    }
}

/// `op` as a step of the model (strings interned by `intern`). An
/// outcome that does not fit the call (a bug in the recorder) is a step
/// that no state allows.
fn step(op: &Op, intern: &mut impl FnMut(&Option<String>) -> Value) -> Step {
    match (&op.call, &op.outcome) {
        (Call::Put(v), _) => Step::Put(intern(&Some(v.clone()))),
        (Call::Get | Call::ReadIndexGet, Outcome::Value(v)) => Step::Read(intern(v)),
        (Call::Cas { expected, new }, outcome) => {
            let (expected, new) = (intern(expected), intern(&Some(new.clone())));
            match outcome {
                Outcome::Done => Step::CasDone { expected, new },
                Outcome::CasFailed(current) => Step::CasRefused {
                    expected,
                    current: intern(current),
                },
                _ => Step::CasMaybe { expected, new },
            }
        }
        (Call::Lock(caller), outcome) => {
            let caller = intern(&Some(caller.clone()));
            match outcome {
                Outcome::Granted(token) => Step::Granted {
                    owner: caller,
                    token: *token,
                },
                Outcome::Held { owner, token } => Step::Held {
                    caller,
                    owner: intern(&Some(owner.clone())),
                    token: *token,
                },
                _ => Step::LockMaybe { owner: caller },
            }
        }
        (Call::Unlock(caller), outcome) => {
            let caller = intern(&Some(caller.clone()));
            match outcome {
                Outcome::Done => Step::Unlocked { owner: caller },
                Outcome::NotOwner(holder) => Step::NotOwner {
                    caller,
                    holder: intern(holder),
                },
                _ => Step::UnlockMaybe { owner: caller },
            }
        }
        (Call::Get | Call::ReadIndexGet, _) => Step::Read(u32::MAX),
    }
}

fn describe(op: &Op) -> String {
    format!(
        "client {} {:?} → {:?} during {:?}..{:?}",
        op.client, op.call, op.outcome, op.invoke, op.complete
    )
}

/// A set of operation indexes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Self(vec![0; len.div_ceil(64)])
    }

    fn set(&mut self, i: usize, on: bool) {
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if on {
            self.0[word] |= bit;
        } else {
            self.0[word] &= !bit;
        }
    }
}

/// The events as a doubly linked list between two sentinels, from which an
/// operation's call and return are lifted when it is linearized and put
/// back when the search backtracks.
struct EventList {
    next: Vec<usize>,
    prev: Vec<usize>,
    call: Vec<usize>,
    ret: Vec<usize>,
}

impl EventList {
    fn new(events: &[(usize, bool)]) -> Self {
        let n = events.len();
        let (head, tail) = (n, n + 1);
        let mut next = vec![tail; n + 2];
        let mut prev = vec![head; n + 2];
        let mut order = vec![head];
        order.extend(0..n);
        order.push(tail);
        for pair in order.windows(2) {
            next[pair[0]] = pair[1];
            prev[pair[1]] = pair[0];
        }
        let ops = n / 2;
        let (mut call, mut ret) = (vec![0; ops], vec![0; ops]);
        for (index, &(op, is_call)) in events.iter().enumerate() {
            if is_call {
                call[op] = index;
            } else {
                ret[op] = index;
            }
        }
        Self {
            next,
            prev,
            call,
            ret,
        }
    }

    fn first(&self) -> usize {
        self.next[self.next.len() - 2]
    }

    fn next(&self, entry: usize) -> usize {
        self.next[entry]
    }

    fn call_of(&self, op: usize) -> usize {
        self.call[op]
    }

    fn unlink(&mut self, entry: usize) {
        let (p, n) = (self.prev[entry], self.next[entry]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, entry: usize) {
        let (p, n) = (self.prev[entry], self.next[entry]);
        self.next[p] = entry;
        self.prev[n] = entry;
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call[op]);
        self.unlink(self.ret[op]);
    }

    fn unlift(&mut self, op: usize) {
        self.relink(self.ret[op]);
        self.relink(self.call[op]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn op(client: usize, call: Call, outcome: Outcome, from_ms: u64, to_ms: u64) -> Op {
        Op {
            client,
            key: "k".into(),
            call,
            outcome,
            invoke: Duration::from_millis(from_ms),
            complete: Duration::from_millis(to_ms),
        }
    }

    fn put(v: &str) -> Call {
        Call::Put(v.into())
    }

    fn read(v: Option<&str>) -> Outcome {
        Outcome::Value(v.map(Into::into))
    }

    fn cas(expected: Option<&str>, new: &str) -> Call {
        Call::Cas {
            expected: expected.map(Into::into),
            new: new.into(),
        }
    }

    #[test]
    fn sequential_puts_and_reads_are_linearizable() {
        let history = [
            op(0, Call::Get, read(None), 0, 1),
            op(0, put("a"), Outcome::Done, 2, 3),
            op(1, Call::Get, read(Some("a")), 4, 5),
            op(1, cas(Some("a"), "b"), Outcome::Done, 6, 7),
            op(
                0,
                cas(Some("a"), "c"),
                Outcome::CasFailed(Some("b".into())),
                8,
                9,
            ),
            op(0, Call::Get, read(Some("b")), 10, 11),
        ];
        let checked = check(&history).expect("linearizable");
        assert_eq!((checked.keys, checked.ops), (1, 6));
    }

    #[test]
    fn concurrent_reads_may_see_either_side_of_a_put() {
        let history = [
            op(0, put("a"), Outcome::Done, 0, 1),
            op(1, put("b"), Outcome::Done, 2, 10),
            op(2, Call::Get, read(Some("b")), 3, 4),
            op(3, Call::Get, read(Some("a")), 3, 5),
        ];
        // b took effect between 3 and 4; the read of a ended at 5 but may
        // have taken effect at 3, before b.
        check(&history).expect("linearizable");
    }

    /// Negative control: a read after a completed overwrite returns the
    /// old value.
    #[test]
    fn a_stale_read_is_caught() {
        let history = [
            op(0, put("a"), Outcome::Done, 0, 1),
            op(0, put("b"), Outcome::Done, 2, 3),
            op(1, Call::Get, read(Some("a")), 4, 5),
        ];
        let violation = check(&history).expect_err("a stale read");
        assert_eq!(violation.key, "k");
        assert!(violation.detail.contains("Get"), "{violation}");
    }

    /// Negative control: two compare-and-sets from the same value both
    /// succeed, which no order of them explains.
    #[test]
    fn two_winning_compare_and_sets_are_caught() {
        let history = [
            op(0, put("a"), Outcome::Done, 0, 1),
            op(1, cas(Some("a"), "b"), Outcome::Done, 2, 5),
            op(2, cas(Some("a"), "c"), Outcome::Done, 3, 6),
        ];
        check(&history).expect_err("both cannot win");
    }

    /// Negative control: a read returns a value nobody wrote.
    #[test]
    fn a_value_from_nowhere_is_caught() {
        let history = [
            op(0, put("a"), Outcome::Done, 0, 1),
            op(1, Call::Get, read(Some("z")), 2, 3),
        ];
        check(&history).expect_err("z was never written");
    }

    #[test]
    fn an_unanswered_write_may_take_effect_later() {
        let history = [
            op(0, put("a"), Outcome::Unknown, 0, 1),
            op(1, put("b"), Outcome::Done, 2, 3),
            op(1, Call::Get, read(Some("b")), 4, 5),
            op(2, Call::Get, read(Some("a")), 6, 7),
            op(2, Call::Get, read(Some("a")), 8, 9),
        ];
        check(&history).expect("a applied after b, between 5 and 6");
    }

    #[test]
    fn an_unanswered_write_may_never_take_effect() {
        let history = [
            op(0, put("a"), Outcome::Unknown, 0, 1),
            op(0, cas(None, "x"), Outcome::Unknown, 0, 1),
            op(1, Call::Get, read(None), 4, 5),
            op(1, Call::Get, Outcome::Unknown, 6, 7),
        ];
        let checked = check(&history).expect("linearizable");
        assert_eq!(checked.ops, 1, "only the answered read is left");
    }

    /// Negative control: an unanswered write seen before it was sent.
    #[test]
    fn an_unanswered_write_seen_before_its_invocation_is_caught() {
        let history = [
            op(1, Call::Get, read(Some("a")), 0, 1),
            op(0, put("a"), Outcome::Unknown, 2, 3),
        ];
        check(&history).expect_err("a read from the future");
    }

    /// Negative control: an unanswered write seen, then the old value
    /// seen again with nothing else written.
    #[test]
    fn a_value_that_comes_back_is_caught() {
        let history = [
            op(0, put("a"), Outcome::Done, 0, 1),
            op(0, put("b"), Outcome::Unknown, 2, 3),
            op(1, Call::Get, read(Some("b")), 4, 5),
            op(1, Call::Get, read(Some("a")), 6, 7),
        ];
        check(&history).expect_err("a came back after b was read");
    }

    fn lock(owner: &str) -> Call {
        Call::Lock(owner.into())
    }

    fn unlock(owner: &str) -> Call {
        Call::Unlock(owner.into())
    }

    fn held(owner: &str, token: u64) -> Outcome {
        Outcome::Held {
            owner: owner.into(),
            token,
        }
    }

    #[test]
    fn a_lock_passed_from_holder_to_holder_is_linearizable() {
        let history = [
            op(0, lock("a"), Outcome::Granted(5), 0, 1),
            op(1, lock("b"), held("a", 5), 2, 3),
            op(0, lock("a"), Outcome::Granted(5), 4, 5),
            op(1, unlock("b"), Outcome::NotOwner(Some("a".into())), 6, 7),
            op(0, unlock("a"), Outcome::Done, 8, 9),
            op(1, lock("b"), Outcome::Granted(12), 10, 11),
            op(0, unlock("a"), Outcome::NotOwner(Some("b".into())), 12, 13),
        ];
        check(&history).expect("linearizable");
    }

    #[test]
    fn an_unanswered_lock_may_have_been_granted_with_a_token_seen_later() {
        let history = [
            op(0, lock("a"), Outcome::Unknown, 0, 1),
            op(1, lock("b"), held("a", 7), 2, 3),
            op(0, unlock("a"), Outcome::Done, 4, 5),
            op(1, lock("b"), Outcome::Granted(9), 6, 7),
        ];
        check(&history).expect("a's lock took effect with token 7");
    }

    /// Negative control: two owners granted the same lock at once.
    #[test]
    fn two_holders_at_once_are_caught() {
        let history = [
            op(0, lock("a"), Outcome::Granted(5), 0, 1),
            op(1, lock("b"), Outcome::Granted(6), 2, 3),
        ];
        check(&history).expect_err("mutual exclusion broken");
    }

    /// Negative control: a fencing token that does not grow.
    #[test]
    fn a_token_that_goes_backwards_is_caught() {
        let history = [
            op(0, lock("a"), Outcome::Granted(5), 0, 1),
            op(0, unlock("a"), Outcome::Done, 2, 3),
            op(1, lock("b"), Outcome::Granted(4), 4, 5),
        ];
        check(&history).expect_err("token 4 after token 5");
    }

    /// Negative control: an unlock by someone who does not hold it.
    #[test]
    fn an_unlock_by_a_non_holder_is_caught() {
        let history = [
            op(0, lock("a"), Outcome::Granted(5), 0, 1),
            op(1, unlock("b"), Outcome::Done, 2, 3),
        ];
        check(&history).expect_err("b never held it");
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut other = op(1, Call::Get, read(Some("a")), 4, 5);
        other.key = "other".into();
        let history = [op(0, put("a"), Outcome::Done, 0, 1), other];
        let violation = check(&history).expect_err("other never had a");
        assert_eq!(violation.key, "other");
    }

    #[test]
    fn many_concurrent_clients_check_quickly() {
        // 8 clients, 2,000 overlapping operations, one register: each
        // client writes its own values and reads what the last write left.
        let mut history = Vec::new();
        let mut value: Option<String> = None;
        for i in 0..2000u64 {
            let client = (i % 8) as usize;
            let (from, to) = (i * 10, i * 10 + 35); // overlaps 3 others
            let call = if i % 3 == 0 {
                Call::Get
            } else {
                put(&format!("v{i}"))
            };
            let outcome = match &call {
                Call::Get => Outcome::Value(value.clone()),
                _ => Outcome::Done,
            };
            if let Call::Put(v) = &call {
                value = Some(v.clone());
            }
            history.push(op(client, call, outcome, from, to));
        }
        let checked = check(&history).expect("linearizable");
        assert_eq!(checked.ops, 2000);
    }
}
