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
            let kv = match pick(8) {
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
                5 => KvCommand::Unlock { name, owner },
                6 if seq % 2 == 0 => KvCommand::List {
                    prefix: b"k".to_vec(),
                    after: None,
                    limit: 3,
                    keys_only: false,
                },
                6 => KvCommand::Changes {
                    prefix: b"k".to_vec(),
                    from: seq.saturating_sub(10),
                    limit: 4,
                },
                // A transaction on the revisions a restored store must
                // carry over exactly.
                _ => KvCommand::Txn {
                    compares: vec![Compare {
                        key: key.clone(),
                        op: CompareOp::Less,
                        target: Target::Modified(seq.saturating_sub(20)),
                    }],
                    success: vec![TxnOp::Put {
                        key,
                        value: b"txn".to_vec(),
                    }],
                    failure: vec![TxnOp::Delete {
                        key: format!("k{}", seq % 5).into_bytes(),
                    }],
                },
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

fn list(prefix: &str, after: Option<&str>, limit: u32) -> KvCommand {
    KvCommand::List {
        prefix: prefix.into(),
        after: after.map(Into::into),
        limit,
        keys_only: false,
    }
}

fn keys_of(response: &KvResponse) -> Vec<String> {
    let KvResponse::Entries { entries, .. } = response else {
        panic!("not a listing: {response:?}");
    };
    entries
        .iter()
        .map(|e| String::from_utf8(e.key.clone()).unwrap())
        .collect()
}

#[test]
fn keys_carry_their_revisions_and_versions() {
    let mut s = KvStore::default();
    run(&mut s, 1, put("a", "1")); // revision 1
    run(&mut s, 2, get("a")); // revision 2: reads count too
    run(&mut s, 3, put("a", "2")); // revision 3
    let KvResponse::Entries {
        entries, revision, ..
    } = run(&mut s, 4, list("a", None, 0))
    else {
        panic!("not a listing");
    };
    assert_eq!(revision, 4);
    assert_eq!(
        (entries[0].created, entries[0].modified, entries[0].version),
        (1, 3, 2)
    );
    run(&mut s, 5, KvCommand::Delete { key: b"a".to_vec() });
    run(&mut s, 6, put("a", "3"));
    let KvResponse::Entries { entries, .. } = run(&mut s, 7, list("a", None, 0)) else {
        panic!("not a listing");
    };
    assert_eq!(
        (entries[0].created, entries[0].modified, entries[0].version),
        (6, 6, 1),
        "a deleted key starts again"
    );
}

#[test]
fn a_listing_is_ordered_prefixed_and_paged() {
    let mut s = KvStore::default();
    for (seq, key) in ["b/2", "a", "b/1", "b/3", "c", "b"].iter().enumerate() {
        run(&mut s, seq as u64 + 1, put(key, "v"));
    }
    let all = run(&mut s, 10, list("b/", None, 0));
    assert_eq!(keys_of(&all), ["b/1", "b/2", "b/3"]);
    assert!(matches!(all, KvResponse::Entries { more: false, .. }));
    let first = run(&mut s, 11, list("b/", None, 2));
    assert_eq!(keys_of(&first), ["b/1", "b/2"]);
    assert!(matches!(first, KvResponse::Entries { more: true, .. }));
    let rest = run(&mut s, 12, list("b/", Some("b/2"), 2));
    assert_eq!(keys_of(&rest), ["b/3"]);
    assert!(matches!(rest, KvResponse::Entries { more: false, .. }));
    assert_eq!(keys_of(&run(&mut s, 13, list("", None, 0))).len(), 6);
    assert_eq!(keys_of(&run(&mut s, 14, list("", Some("a"), 1))), ["b"]);
    assert!(keys_of(&run(&mut s, 15, list("x", None, 0))).is_empty());
    let keys_only = KvCommand::List {
        prefix: b"b/".to_vec(),
        after: None,
        limit: 1,
        keys_only: true,
    };
    let KvResponse::Entries { entries, .. } = run(&mut s, 16, keys_only) else {
        panic!("not a listing");
    };
    assert_eq!(entries[0].value, None);
}

#[test]
fn a_listing_page_is_bounded_by_bytes_but_always_moves_on() {
    let limits = KvLimits {
        max_value_len: 100 * 1024,
        ..KvLimits::default()
    };
    let mut s = KvStore::new(limits);
    let big = vec![7u8; 100 * 1024];
    for i in 0..5u64 {
        let key = format!("k{i}").into_bytes();
        run(
            &mut s,
            i + 1,
            KvCommand::Put {
                key,
                value: big.clone(),
            },
        );
    }
    let budget = limits.list_page_bytes();
    let mut after: Option<String> = None;
    let mut pages = 0;
    let mut seen = Vec::new();
    loop {
        let response = run(&mut s, 10 + pages, list("k", after.as_deref(), 0));
        let KvResponse::Entries { entries, more, .. } = &response else {
            panic!("not a listing");
        };
        let bytes: usize = entries.iter().map(|e| e.key.len() + big.len()).sum();
        assert!(
            !entries.is_empty() && bytes <= budget,
            "a page of {bytes} bytes"
        );
        seen.extend(keys_of(&response));
        after = seen.last().cloned();
        pages += 1;
        if !more {
            break;
        }
    }
    assert_eq!(seen, ["k0", "k1", "k2", "k3", "k4"]);
    assert!(pages >= 5, "{pages} pages for five keys of a page each");
}

fn compare(key: &str, op: CompareOp, target: Target) -> Compare {
    Compare {
        key: key.into(),
        op,
        target,
    }
}

fn txn(compares: Vec<Compare>, success: Vec<TxnOp>, failure: Vec<TxnOp>) -> KvCommand {
    KvCommand::Txn {
        compares,
        success,
        failure,
    }
}

fn txn_put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn a_transaction_applies_one_branch_by_its_compares() {
    let mut s = KvStore::default();
    let absent = compare("k", CompareOp::Equal, Target::Version(0));
    let create = txn(
        vec![absent.clone()],
        vec![txn_put("k", "1"), txn_put("log", "created")],
        vec![txn_put("log", "existed")],
    );
    assert_eq!(
        run(&mut s, 1, create.clone()),
        KvResponse::Txn {
            succeeded: true,
            revision: 1
        }
    );
    assert_eq!(
        run(&mut s, 2, get("log")),
        KvResponse::Value(b"created".to_vec())
    );
    assert_eq!(
        run(&mut s, 3, create),
        KvResponse::Txn {
            succeeded: false,
            revision: 3
        }
    );
    assert_eq!(
        run(&mut s, 4, get("log")),
        KvResponse::Value(b"existed".to_vec())
    );
    assert_eq!(run(&mut s, 5, get("k")), KvResponse::Value(b"1".to_vec()));

    let holds = |s: &mut KvStore, seq, c: Compare| {
        matches!(
            run(s, seq, txn(vec![c], vec![], vec![])),
            KvResponse::Txn {
                succeeded: true,
                ..
            }
        )
    };
    assert!(holds(
        &mut s,
        6,
        compare("k", CompareOp::Equal, Target::Value(b"1".to_vec()))
    ));
    assert!(holds(
        &mut s,
        7,
        compare("k", CompareOp::Greater, Target::Value(b"0".to_vec()))
    ));
    assert!(holds(
        &mut s,
        8,
        compare("k", CompareOp::Less, Target::Value(b"2".to_vec()))
    ));
    assert!(!holds(
        &mut s,
        9,
        compare("k", CompareOp::NotEqual, Target::Value(b"1".to_vec()))
    ));
    assert!(holds(
        &mut s,
        10,
        compare("k", CompareOp::Equal, Target::Version(1))
    ));
    assert!(holds(
        &mut s,
        11,
        compare("k", CompareOp::Equal, Target::Created(1))
    ));
    assert!(holds(
        &mut s,
        12,
        compare("k", CompareOp::Equal, Target::Modified(1))
    ));
    assert!(holds(
        &mut s,
        13,
        compare("k", CompareOp::Greater, Target::Version(0))
    ));
    assert!(
        !holds(
            &mut s,
            14,
            compare("nope", CompareOp::NotEqual, Target::Value(b"x".to_vec()))
        ),
        "a value compare on an absent key never holds"
    );
    assert!(holds(
        &mut s,
        15,
        compare("nope", CompareOp::Equal, Target::Modified(0))
    ));

    // Every compare must hold; a delete in the branch removes the key.
    let both = vec![
        compare("k", CompareOp::Equal, Target::Version(1)),
        compare("log", CompareOp::Equal, Target::Value(b"nope".to_vec())),
    ];
    let delete = vec![TxnOp::Delete { key: b"k".to_vec() }];
    assert!(matches!(
        run(&mut s, 16, txn(both, vec![], delete.clone())),
        KvResponse::Txn {
            succeeded: false,
            ..
        }
    ));
    assert_eq!(run(&mut s, 17, get("k")), KvResponse::NotFound);
    assert!(
        matches!(
            run(&mut s, 18, txn(vec![], delete, vec![])),
            KvResponse::Txn {
                succeeded: true,
                ..
            }
        ),
        "deleting an absent key is no error"
    );
}

#[test]
fn an_oversized_or_empty_keyed_transaction_is_refused_whole() {
    let limits = KvLimits {
        max_txn_ops: 2,
        max_value_len: 4,
        ..KvLimits::default()
    };
    let mut s = KvStore::new(limits);
    let three = vec![txn_put("a", "1"), txn_put("b", "1"), txn_put("c", "1")];
    assert!(matches!(
        run(&mut s, 1, txn(vec![], three, vec![])),
        KvResponse::TooLarge { .. }
    ));
    let long_value = vec![txn_put("a", "1"), txn_put("b", "12345")];
    assert!(matches!(
        run(&mut s, 2, txn(vec![], long_value, vec![])),
        KvResponse::TooLarge { what, .. } if what == "value"
    ));
    assert_eq!(
        run(&mut s, 3, get("a")),
        KvResponse::NotFound,
        "nothing applied"
    );
    let empty_key = txn(
        vec![compare("", CompareOp::Equal, Target::Version(0))],
        vec![],
        vec![],
    );
    assert!(empty_key.check().is_err());
    assert!(txn(vec![], vec![txn_put("", "v")], vec![]).check().is_err());
}

#[test]
fn transaction_and_listing_tags_are_pinned() {
    let command = txn(
        vec![compare("k", CompareOp::Greater, Target::Version(2))],
        vec![txn_put("k", "v")],
        vec![TxnOp::Delete { key: b"k".to_vec() }],
    );
    assert_eq!(
        command.encode(),
        vec![
            6, 1, 1, b'k', 3, 1, 2, 1, 0, 1, b'k', 1, b'v', 1, 1, 1, b'k'
        ]
    );
    assert_eq!(
        list("p", Some("q"), 5).encode(),
        vec![7, 1, b'p', 1, 1, b'q', 5, 0]
    );
    assert_eq!(
        KvResponse::Txn {
            succeeded: true,
            revision: 3
        }
        .encode(),
        vec![10, 1, 3]
    );
}

/// A format-1 snapshot (before revisions) of keys `k0..k{n}` = `v`.
fn format_one_snapshot(n: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    snapshot::write_format_one(&mut bytes, n).unwrap();
    bytes
}

#[test]
fn a_snapshot_from_before_revisions_still_restores() {
    let mut restored = restored_from(&format_one_snapshot(3)).unwrap();
    assert_eq!(restored.revision(), 3);
    let KvResponse::Entries { entries, .. } = run(&mut restored, 1, list("k", None, 0)) else {
        panic!("not a listing");
    };
    assert_eq!(entries.len(), 3);
    assert!(
        entries
            .iter()
            .all(|e| (e.created, e.modified, e.version) == (0, 0, 1))
    );
    run(&mut restored, 2, put("k1", "w"));
    let again = restored_from(&snapshot_of(&restored)).unwrap();
    assert_eq!(again.data, restored.data, "written back as format 2");
}

#[test]
fn a_query_reads_the_applied_state_without_applying_anything() {
    let mut s = KvStore::default();
    run(&mut s, 1, put("a/1", "x"));
    run(&mut s, 2, put("a/2", "y"));
    let query =
        |s: &KvStore, kv: KvCommand| KvResponse::decode(&s.query(&kv.encode()).unwrap()).unwrap();
    assert_eq!(query(&s, get("a/1")), KvResponse::Value(b"x".to_vec()));
    assert_eq!(query(&s, get("b")), KvResponse::NotFound);
    assert_eq!(keys_of(&query(&s, list("a/", None, 0))), ["a/1", "a/2"]);
    assert!(
        matches!(query(&s, put("a/1", "z")), KvResponse::Malformed(_)),
        "a write is refused"
    );
    assert!(matches!(
        s.query(b"\xff\xff")
            .map(|r| KvResponse::decode(&r).unwrap()),
        Some(KvResponse::Malformed(_))
    ));
    let long_key = KvCommand::Get {
        key: vec![b'k'; 2000],
    };
    assert!(matches!(query(&s, long_key), KvResponse::TooLarge { .. }));
    assert_eq!(s.revision(), 2, "queries are not applied");
    assert_eq!(
        run(&mut s, 3, get("a/1")),
        KvResponse::Value(b"x".to_vec()),
        "nothing written"
    );
}

fn changes(from: u64, prefix: &str) -> KvCommand {
    KvCommand::Changes {
        prefix: prefix.into(),
        from,
        limit: 0,
    }
}

/// (revision, key, value) of a `Changes` answer, and its `next`.
fn changed(response: KvResponse) -> (Vec<(u64, String, Option<String>)>, u64) {
    let KvResponse::Changes { changes, next, .. } = response else {
        panic!("not changes: {response:?}");
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let listed = changes
        .iter()
        .map(|c| (c.revision, text(&c.key), c.value.as_deref().map(text)))
        .collect();
    (listed, next)
}

#[test]
fn the_history_holds_every_change_in_revision_order() {
    let mut s = KvStore::default();
    let query =
        |s: &KvStore, kv: KvCommand| KvResponse::decode(&s.query(&kv.encode()).unwrap()).unwrap();
    assert_eq!(changed(query(&s, changes(0, ""))), (vec![], 1), "from now");
    run(&mut s, 1, put("w/a", "1")); // 1
    run(&mut s, 2, put("other", "x")); // 2
    run(
        &mut s,
        3,
        KvCommand::Delete {
            key: b"w/a".to_vec(),
        },
    ); // 3
    run(
        &mut s,
        4,
        KvCommand::Delete {
            key: b"w/a".to_vec(),
        },
    ); // 4: absent, no change
    let both = txn(
        vec![],
        vec![txn_put("w/b", "2"), txn_put("w/c", "3")],
        vec![],
    );
    run(&mut s, 5, both); // 5
    let some = |v: &str| Some(v.to_owned());
    let (seen, next) = changed(query(&s, changes(1, "w/")));
    assert_eq!(
        seen,
        vec![
            (1, "w/a".into(), some("1")),
            (3, "w/a".into(), None),
            (5, "w/b".into(), some("2")),
            (5, "w/c".into(), some("3")),
        ]
    );
    assert_eq!(next, 6);
    assert_eq!(
        changed(query(&s, changes(4, "w/"))).0.len(),
        2,
        "from a later revision"
    );
    assert_eq!(
        changed(query(&s, changes(6, "w/"))),
        (vec![], 6),
        "nothing new yet"
    );
    assert_eq!(
        changed(query(&s, changes(9, "w/"))),
        (vec![], 9),
        "from the future"
    );
    let limited = KvCommand::Changes {
        prefix: b"w/".to_vec(),
        from: 4,
        limit: 1,
    };
    let KvResponse::Changes {
        changes: page,
        more,
        ..
    } = query(&s, limited)
    else {
        panic!("not changes");
    };
    assert_eq!((page.len(), more), (2, false), "a revision is never split");
}

/// The image the learner writes off its actor is the snapshot's bytes at
/// the moment it was taken, however the store changes after.
#[test]
fn a_snapshot_image_writes_the_snapshot_as_of_when_it_was_taken() {
    let limits = KvLimits {
        watch_history: 5_000, // several sealed chunks, trimmed as it goes
        ..KvLimits::default()
    };
    let mut s = KvStore::new(limits);
    let mut seq = 0;
    let mut apply = |s: &mut KvStore, n: u64| {
        for _ in 0..n {
            seq += 1;
            let key = format!("k{}", seq % 300);
            let kv = match seq % 7 {
                0 => KvCommand::Delete {
                    key: key.into_bytes(),
                },
                _ => put(&key, &format!("v{seq}")),
            };
            run(s, seq, kv);
        }
    };
    apply(&mut s, 7_300);
    assert!(s.history.changes().len() > 4_000, "the history is full");
    let expected = snapshot_of(&s);
    let image = s.snapshot_image();
    apply(&mut s, 2_100); // seals, trims and drops chunks the image holds
    let mut written = Vec::new();
    image(&mut written).unwrap();
    assert!(written == expected, "the image wrote other bytes");
    assert_ne!(snapshot_of(&s), expected, "the store moved on");
    let mut again = KvStore::new(limits);
    again.restore(&mut &written[..]).unwrap();
    assert!(
        snapshot_of(&again) == expected,
        "restored, it writes the same"
    );
}

#[test]
fn a_trimmed_history_says_compacted_and_keeps_whole_revisions() {
    let limits = KvLimits {
        watch_history: 3,
        ..KvLimits::default()
    };
    let mut s = KvStore::new(limits);
    run(&mut s, 1, put("a", "1")); // 1
    let pair = txn(vec![], vec![txn_put("b", "2"), txn_put("c", "3")], vec![]);
    run(&mut s, 2, pair); // 2: two changes
    run(&mut s, 3, put("d", "4")); // 3: four changes kept > 3, revision 1 goes
    let query =
        |s: &KvStore, kv: KvCommand| KvResponse::decode(&s.query(&kv.encode()).unwrap()).unwrap();
    assert_eq!(
        query(&s, changes(1, "")),
        KvResponse::Compacted { horizon: 2 }
    );
    assert_eq!(changed(query(&s, changes(2, ""))).0.len(), 3);
    run(&mut s, 4, put("e", "5")); // revision 2 goes whole: both of its changes
    assert_eq!(
        query(&s, changes(2, "")),
        KvResponse::Compacted { horizon: 3 }
    );
    let (seen, _) = changed(query(&s, changes(3, "")));
    assert_eq!(seen.iter().map(|c| c.0).collect::<Vec<_>>(), [3, 4]);
    let again = restored_from(&snapshot_of(&s)).unwrap();
    let kept = |s: &KvStore| {
        (
            s.history.horizon(),
            s.history.changes().iter().cloned().collect::<Vec<_>>(),
        )
    };
    assert_eq!(kept(&again), kept(&s), "the history is in the snapshot");
}
