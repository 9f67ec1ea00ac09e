//! Property tests: the decoders never panic on arbitrary bytes, and every
//! message kind survives an encode/decode round trip inside an envelope.

use bytes::BytesMut;
use proptest::prelude::*;
use synod_core::{
    AcceptedEntry, AcceptedRegister, Ballot, Command, CommandId, Message, Role, RoleId, Value,
};
use synod_transport::{Envelope, PROTOCOL_VERSION, decode_envelope, encode_frame, frame_codec};
use tokio_util::codec::Decoder;

fn ballot() -> impl Strategy<Value = Ballot> {
    (any::<u64>(), any::<u32>()).prop_map(|(round, proposer)| Ballot::new(round, proposer))
}

fn command() -> impl Strategy<Value = Command> {
    (
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(client, seq, payload)| Command {
            id: CommandId { client, seq },
            payload,
        })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Noop),
        prop::collection::vec(command(), 0..4).prop_map(Value::batch)
    ]
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9/-]{0,16}"
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..32)
}

/// Every variant of `Message`. Adding a variant without adding it here
/// leaves it untested, so keep this list in step with synod-core.
fn message() -> impl Strategy<Value = Message> {
    let entry = (any::<u64>(), ballot(), value()).prop_map(|(slot, ballot, value)| AcceptedEntry {
        slot,
        ballot,
        value,
    });
    let register =
        (ballot(), bytes()).prop_map(|(ballot, value)| AcceptedRegister { ballot, value });
    prop_oneof![
        (ballot(), any::<u64>())
            .prop_map(|(ballot, from_slot)| Message::Prepare { ballot, from_slot }),
        (
            ballot(),
            any::<u64>(),
            prop::collection::vec(entry, 0..4),
            any::<Option<u64>>(),
            any::<u64>()
        )
            .prop_map(|(ballot, from_slot, accepted, next, chosen_upto)| {
                Message::Promise {
                    ballot,
                    from_slot,
                    accepted,
                    next,
                    chosen_upto,
                    trimmed_below: 0,
                }
            }),
        (ballot(), any::<u64>(), value(), any::<u64>()).prop_map(
            |(ballot, slot, value, chosen_upto)| Message::Accept {
                ballot,
                slot,
                value,
                chosen_upto,
            }
        ),
        (ballot(), any::<u64>()).prop_map(|(ballot, slot)| Message::Accepted { ballot, slot }),
        (ballot(), ballot()).prop_map(|(ballot, promised)| Message::Nack { ballot, promised }),
        (any::<u64>(), value()).prop_map(|(slot, value)| Message::Decided { slot, value }),
        (ballot(), any::<u64>()).prop_map(|(ballot, decided_upto)| Message::Heartbeat {
            ballot,
            decided_upto
        }),
        prop::collection::vec(command(), 0..4).prop_map(|commands| Message::Forward { commands }),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(from_slot, to_slot, escalate)| {
            Message::CatchUp {
                from_slot,
                to_slot,
                escalate,
            }
        }),
        (name(), ballot()).prop_map(|(name, ballot)| Message::InstancePrepare { name, ballot }),
        (name(), ballot(), prop::option::of(register)).prop_map(|(name, ballot, accepted)| {
            Message::InstancePromise {
                name,
                ballot,
                accepted,
            }
        }),
        (name(), ballot(), bytes()).prop_map(|(name, ballot, value)| Message::InstanceAccept {
            name,
            ballot,
            value
        }),
        (name(), ballot()).prop_map(|(name, ballot)| Message::InstanceAccepted { name, ballot }),
        (name(), ballot(), ballot()).prop_map(|(name, ballot, promised)| Message::InstanceNack {
            name,
            ballot,
            promised
        }),
        (name(), bytes()).prop_map(|(name, value)| Message::InstanceDecided { name, value }),
        name().prop_map(|name| Message::InstanceLearned { name }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(count, digest)| Message::InstanceSync { count, digest }),
    ]
}

fn role() -> impl Strategy<Value = RoleId> {
    (
        prop_oneof![
            Just(Role::Proposer),
            Just(Role::Acceptor),
            Just(Role::Learner)
        ],
        any::<u32>(),
    )
        .prop_map(|(role, index)| RoleId { role, index })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_payloads_never_panic_the_envelope_decoder(payload in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_envelope::<Message>(&payload);
    }

    #[test]
    fn arbitrary_streams_never_panic_the_frame_decoder(stream in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut codec = frame_codec(128);
        let mut buffer = BytesMut::from(&stream[..]);
        while let Ok(Some(frame)) = codec.decode(&mut buffer) {
            prop_assert!(frame.len() <= 128);
            let _ = decode_envelope::<Message>(&frame);
        }
    }

    #[test]
    fn every_message_kind_round_trips(message in message(), from in role(), to in role(), sender in "[a-z0-9]{1,8}") {
        let envelope = Envelope { version: PROTOCOL_VERSION, cluster: "c", sender: &sender, from, to, message };
        let frame = encode_frame(&envelope, 1 << 20).unwrap();
        let mut codec = frame_codec(1 << 20);
        let payload = codec.decode(&mut BytesMut::from(&frame[..])).unwrap().expect("a whole frame");
        let decoded: Envelope<'_, Message> = decode_envelope(&payload).unwrap();
        prop_assert_eq!(decoded, envelope);
    }
}
