//! What one full Promise page costs to encode: the reply an acceptor with a
//! long untrimmed log sends to every Prepare (up to `reply_max_bytes`,
//! 1 MiB by default, of accepted batches of small commands).
//!
//! ```sh
//! cargo run --release -p synod-transport --example promise_page [-- PAGES]
//! ```
//!
//! Ends with `page: N entries, B bytes; encode: X ms per page, Y MB/s`.

use std::time::Instant;
use synod_core::{AcceptedEntry, Ballot, Command, CommandId, Message, RoleId, Value};
use synod_transport::{Envelope, PROTOCOL_VERSION, encode_frame};

/// Commands per accepted batch and bytes per command payload: a cluster
/// under a load of 16-byte puts.
const COMMANDS_PER_SLOT: u64 = 16;
const PAYLOAD: usize = 40;
const PAGE_BYTES: usize = 1024 * 1024;

/// Accepted entries filling one page, as the acceptor builds it.
fn full_page() -> Message {
    let mut accepted = Vec::new();
    let mut bytes = 0;
    let mut slot = 0;
    while bytes < PAGE_BYTES {
        let commands = (0..COMMANDS_PER_SLOT)
            .map(|seq| Command {
                id: CommandId { client: slot, seq },
                payload: vec![0x5a; PAYLOAD],
            })
            .collect();
        let value = Value::batch(commands);
        bytes += AcceptedEntry::encoded_len(&value);
        accepted.push(AcceptedEntry {
            slot,
            ballot: Ballot::new(3, 1),
            value,
        });
        slot += 1;
    }
    Message::Promise {
        ballot: Ballot::new(4, 2),
        from_slot: 0,
        accepted,
        next: Some(slot),
        chosen_upto: 0,
        trimmed_below: 0,
    }
}

fn main() {
    let pages: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("PAGES is a number"))
        .unwrap_or(50);
    let message = full_page();
    let Message::Promise { accepted, .. } = &message else {
        unreachable!()
    };
    let entries = accepted.len();
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        cluster: "bench",
        sender: "node-1",
        from: RoleId::acceptor(1),
        to: RoleId::proposer(2),
        message,
    };
    let started = Instant::now();
    let mut frame_len = 0;
    for _ in 0..pages {
        frame_len = encode_frame(&envelope, 16 * PAGE_BYTES).unwrap().len();
    }
    let per_page = started.elapsed().as_secs_f64() / f64::from(pages);
    println!(
        "page: {entries} entries, {frame_len} bytes; encode: {:.2} ms per page, {:.0} MB/s",
        per_page * 1e3,
        frame_len as f64 / per_page / 1e6
    );
}
