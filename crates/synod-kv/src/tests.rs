use super::*;
use synod_api::SnapshotError;

fn command(client: u64, seq: u64, kv: KvCommand) -> Command {
    Command {
        id: CommandId { client, seq },
        payload: kv.encode(),
    }
}

fn run(store: &mut KvStore, seq: u64, kv: KvCommand) -> KvResponse {
    KvResponse::decode(&store.apply(&command(1, seq, kv))).unwrap()
}

fn put(key: &str, value: &str) -> KvCommand {
    KvCommand::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn get(key: &str) -> KvCommand {
    KvCommand::Get { key: key.into() }
}

#[test]
fn put_get_delete() {
    let mut s = KvStore::default();
    assert_eq!(run(&mut s, 1, get("a")), KvResponse::NotFound);
    assert_eq!(run(&mut s, 2, put("a", "1")), KvResponse::Done);
    assert_eq!(run(&mut s, 3, get("a")), KvResponse::Value(b"1".to_vec()));
    assert_eq!(
        run(&mut s, 4, KvCommand::Delete { key: b"a".to_vec() }),
        KvResponse::Done
    );
    assert_eq!(
        run(&mut s, 5, KvCommand::Delete { key: b"a".to_vec() }),
        KvResponse::NotFound
    );
    assert_eq!(run(&mut s, 6, get("a")), KvResponse::NotFound);
}

#[test]
fn compare_and_set_on_value_and_on_absence() {
    let mut s = KvStore::default();
    let cas = |expected: Option<&str>, new: &str| KvCommand::Cas {
        key: b"k".to_vec(),
        expected: expected.map(|e| e.as_bytes().to_vec()),
        new: new.into(),
    };
    assert_eq!(
        run(&mut s, 1, cas(None, "v1")),
        KvResponse::Done,
        "create if absent"
    );
    assert_eq!(
        run(&mut s, 2, cas(None, "v2")),
        KvResponse::CasFailed {
            current: Some(b"v1".to_vec())
        }
    );
    assert_eq!(
        run(&mut s, 3, cas(Some("wrong"), "v2")),
        KvResponse::CasFailed {
            current: Some(b"v1".to_vec())
        }
    );
    assert_eq!(run(&mut s, 4, cas(Some("v1"), "v2")), KvResponse::Done);
    assert_eq!(run(&mut s, 5, get("k")), KvResponse::Value(b"v2".to_vec()));
}

#[test]
fn locks_are_exclusive_and_tokens_grow() {
    let mut s = KvStore::default();
    let lock = |owner: &str| KvCommand::Lock {
        name: b"leader".to_vec(),
        owner: owner.into(),
    };
    let unlock = |owner: &str| KvCommand::Unlock {
        name: b"leader".to_vec(),
        owner: owner.into(),
    };
    let KvResponse::Granted { token: first } = run(&mut s, 1, lock("a")) else {
        panic!()
    };
    assert_eq!(
        run(&mut s, 2, lock("a")),
        KvResponse::Granted { token: first },
        "re-entrant for the holder"
    );
    assert_eq!(
        run(&mut s, 3, lock("b")),
        KvResponse::Held {
            owner: "a".into(),
            token: first
        }
    );
    assert_eq!(
        run(&mut s, 4, unlock("b")),
        KvResponse::NotOwner {
            owner: Some("a".into())
        }
    );
    assert_eq!(run(&mut s, 5, unlock("a")), KvResponse::Unlocked);
    assert_eq!(
        run(&mut s, 6, unlock("a")),
        KvResponse::NotOwner { owner: None }
    );
    let KvResponse::Granted { token: second } = run(&mut s, 7, lock("b")) else {
        panic!()
    };
    assert!(second > first, "fencing tokens only grow");
}

#[test]
fn oversized_keys_and_values_are_refused_without_effect() {
    let limits = KvLimits {
        max_key_len: 4,
        max_value_len: 8,
        ..KvLimits::default()
    };
    let mut s = KvStore::new(limits);
    assert_eq!(
        run(&mut s, 1, put("too-long", "v")),
        KvResponse::TooLarge {
            what: "key".into(),
            len: 8,
            limit: 4
        }
    );
    assert_eq!(
        run(&mut s, 2, put("k", "123456789")),
        KvResponse::TooLarge {
            what: "value".into(),
            len: 9,
            limit: 8
        }
    );
    assert!(s.is_empty());
}

#[test]
fn a_malformed_payload_gets_an_error_response() {
    let mut s = KvStore::default();
    let bad = Command {
        id: CommandId { client: 1, seq: 1 },
        payload: vec![0xff, 0xff],
    };
    assert!(matches!(
        KvResponse::decode(&s.apply(&bad)).unwrap(),
        KvResponse::Malformed(_)
    ));
}

#[test]
fn a_retry_gets_the_original_response() {
    let mut s = KvStore::default();
    run(&mut s, 1, put("a", "1"));
    let original = s.apply(&command(7, 1, get("a")));
    run(&mut s, 2, put("a", "2"));
    assert_eq!(
        s.response_to(CommandId { client: 7, seq: 1 }),
        Some(original)
    );
    assert_eq!(s.response_to(CommandId { client: 7, seq: 2 }), None);
}

#[test]
fn the_client_table_is_bounded_and_evicts_deterministically() {
    let limits = KvLimits {
        responses_per_client: 2,
        max_clients: 3,
        ..KvLimits::default()
    };
    let mut s = KvStore::new(limits);
    for seq in 1..=5 {
        s.apply(&command(1, seq, get("x")));
    }
    assert!(
        s.response_to(CommandId { client: 1, seq: 3 }).is_none(),
        "only the last 2 kept"
    );
    assert!(s.response_to(CommandId { client: 1, seq: 5 }).is_some());
    for client in 2..=4 {
        s.apply(&command(client, 1, get("x")));
    }
    assert_eq!(s.clients.clients(), 3);
    assert!(
        s.response_to(CommandId { client: 1, seq: 5 }).is_none(),
        "the idlest client went first"
    );
    assert!(s.response_to(CommandId { client: 4, seq: 1 }).is_some());
}

#[test]
fn replaying_the_same_commands_gives_the_same_state_and_answers() {
    let commands: Vec<Command> = (0..200u64)
        .map(|i| {
            let key = format!("k{}", i % 7);
            let kv = match i % 4 {
                0 => put(&key, &i.to_string()),
                1 => KvCommand::Cas {
                    key: key.into_bytes(),
                    expected: None,
                    new: b"c".to_vec(),
                },
                2 => KvCommand::Lock {
                    name: b"l".to_vec(),
                    owner: format!("o{}", i % 3),
                },
                _ => KvCommand::Unlock {
                    name: b"l".to_vec(),
                    owner: format!("o{}", i % 3),
                },
            };
            command(i % 5, i, kv)
        })
        .collect();
    let mut a = KvStore::default();
    let mut b = KvStore::default();
    let answers_a: Vec<Vec<u8>> = commands.iter().map(|c| a.apply(c)).collect();
    let answers_b: Vec<Vec<u8>> = commands.iter().map(|c| b.apply(c)).collect();
    assert_eq!(answers_a, answers_b);
    assert_eq!(a.data, b.data);
    assert_eq!(a.locks, b.locks);
}

#[test]
fn command_and_response_tags_are_pinned() {
    assert_eq!(put("a", "b").encode(), vec![0, 1, b'a', 1, b'b']);
    assert_eq!(
        KvCommand::Unlock {
            name: b"n".to_vec(),
            owner: "o".into()
        }
        .encode(),
        vec![5, 1, b'n', 1, b'o']
    );
    let cas = KvCommand::Cas {
        key: b"k".to_vec(),
        expected: Some(b"e".to_vec()),
        new: b"n".to_vec(),
    };
    assert_eq!(cas.encode(), vec![3, 1, b'k', 1, 1, b'e', 1, b'n']);
    assert_eq!(KvResponse::NotFound.encode(), vec![2]);
    assert_eq!(KvResponse::Malformed("x".into()).encode(), vec![9, 1, b'x']);
}

/// A random mix of every command kind from a few clients on a few keys.
fn random_commands(seed: u64, count: u64) -> Vec<Command> {
    let mut rng = synod_core::SplitMix64::new(seed);
    let mut pick = |n: u64| rng.next_u64() % n;
    (1..=count)
        .map(|seq| {
            let key = format!("k{}", pick(5)).into_bytes();
            let name = format!("l{}", pick(2)).into_bytes();
            let owner = format!("o{}", pick(3));
            let kv = match pick(6) {
                0 => KvCommand::Put {
                    key,
                    value: seq.to_be_bytes().to_vec(),
                },
                1 => KvCommand::Get { key },
                2 => KvCommand::Delete { key },
                3 => KvCommand::Cas {
                    key,
                    expected: None,
                    new: vec![1],
                },
                4 => KvCommand::Lock { name, owner },
                _ => KvCommand::Unlock { name, owner },
            };
            command(pick(4), seq, kv)
        })
        .collect()
}

fn snapshot_of(store: &KvStore) -> Vec<u8> {
    let mut bytes = Vec::new();
    store.snapshot(&mut bytes).unwrap();
    bytes
}

fn restored_from(bytes: &[u8]) -> Result<KvStore, SnapshotError> {
    let mut store = KvStore::new(KvLimits {
        responses_per_client: 8,
        ..KvLimits::default()
    });
    store.restore(&mut &bytes[..]).map(|()| store)
}

#[test]
fn a_restored_snapshot_continues_exactly_like_the_original() {
    let limits = KvLimits {
        responses_per_client: 8,
        ..KvLimits::default()
    };
    for seed in 0..40 {
        let commands = random_commands(seed, 300);
        let cut = 1 + (seed as usize * 7) % 299;
        let mut original = KvStore::new(limits);
        for c in &commands[..cut] {
            original.apply(c);
        }
        let mut restored = restored_from(&snapshot_of(&original)).unwrap();
        for c in &commands[cut..] {
            assert_eq!(original.apply(c), restored.apply(c), "seed {seed}");
        }
        assert_eq!(
            snapshot_of(&original),
            snapshot_of(&restored),
            "seed {seed}"
        );
        for c in &commands {
            assert_eq!(
                original.response_to(c.id),
                restored.response_to(c.id),
                "seed {seed}: retry answers"
            );
        }
    }
}

#[test]
fn a_cut_padded_or_foreign_snapshot_is_refused() {
    let mut store = KvStore::default();
    for c in random_commands(1, 200) {
        store.apply(&c);
    }
    let bytes = snapshot_of(&store);
    for cut in (0..bytes.len()).step_by(7) {
        assert!(
            restored_from(&bytes[..cut]).is_err(),
            "cut at {cut} accepted"
        );
    }
    let mut padded = bytes.clone();
    padded.push(0);
    assert!(restored_from(&padded).is_err(), "trailing byte accepted");
    let mut foreign = bytes.clone();
    foreign[5] ^= 0xff; // inside the header's format field
    assert!(restored_from(&foreign).is_err());
    assert!(restored_from(b"not a snapshot").is_err());
    assert!(restored_from(&bytes).is_ok());
}
