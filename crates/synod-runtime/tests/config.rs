//! Config loading: layers (defaults, file, environment) and one test per
//! validation rule, each checking the message names the field and the fix.

use serde::Deserialize;
use std::io::Write;
use synod_runtime::{AppSection, ConfigSource, LoadError, Problem, SynodConfig};

const BASE: &str = include_str!("base.toml");

fn load(text: &str) -> Result<(SynodConfig, Vec<synod_runtime::Problem>), LoadError> {
    SynodConfig::from_toml_str(text, "test")
}

fn problems(text: &str) -> Vec<String> {
    match load(text) {
        Err(LoadError::Rules { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        Err(other) => vec![other.to_string()],
        Ok(_) => Vec::new(),
    }
}

fn warnings(text: &str) -> Vec<String> {
    load(text)
        .expect("valid")
        .1
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn has(list: &[String], needles: &[&str]) -> bool {
    list.iter().any(|p| needles.iter().all(|n| p.contains(n)))
}

#[test]
fn the_base_config_is_valid_with_defaults_filled_in() {
    let (config, warnings) = load(BASE).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.paxos.pipeline_window, 64, "built-in default");
    assert_eq!(config.roles_on("n1").len(), 3);
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn synod_variables_handed_to_the_loader_override_the_file() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(file, "{BASE}\n[paxos]\nbatch_max_commands = 10\n").unwrap();
    let given = vars(&[
        ("SYNOD_PAXOS__BATCH_MAX_COMMANDS", "777"),
        ("PATH", "/bin"),
        ("OTHER_PAXOS__BATCH_MAX_COMMANDS", "5"),
    ]);
    let (config, _) = ConfigSource::file(file.path()).env(given).load().unwrap();
    assert_eq!(config.paxos.batch_max_commands, 777);
    let (plain, _) = SynodConfig::load(file.path()).unwrap();
    assert_eq!(plain.paxos.batch_max_commands, 10, "no layer unless asked");
}

#[test]
fn synod_variables_that_name_no_config_section_are_not_overrides() {
    let given = vars(&[
        ("SYNOD_BIN", "/usr/bin/synod"),
        ("SYNOD_SOAK_SECS", "60"),
        ("SYNOD_CRASH_CYCLES", "5"),
        ("SYNOD_PAXOS", "x"),
        ("SYNOD_TRANSPORT__QUEUE_CAPACITY", "99"),
    ]);
    let (config, _) = ConfigSource::text(BASE, "test")
        .env(given)
        .load()
        .expect("variables for other tools are ignored");
    assert_eq!(
        config.transport.queue_capacity, 99,
        "a config key still overrides"
    );
}

#[test]
fn a_bad_variable_handed_to_the_loader_is_named() {
    let given = vars(&[("SYNOD_PAXOS__BOGUS", "1")]);
    let error = ConfigSource::text(BASE, "test")
        .env(given)
        .load()
        .unwrap_err();
    assert!(error.to_string().contains("bogus"), "{error}");
}

#[test]
fn pure_loading_reads_no_environment() {
    // SAFETY: the only test in this binary that touches the process
    // environment; it sets a variable no other test reads.
    unsafe { std::env::set_var("SYNOD_PAXOS__BOGUS", "1") };
    let pure = SynodConfig::from_toml_str(BASE, "test");
    let layered = ConfigSource::text(BASE, "test")
        .env(std::env::vars())
        .load();
    unsafe { std::env::remove_var("SYNOD_PAXOS__BOGUS") };
    assert!(pure.is_ok(), "{:?}", pure.err());
    assert!(
        layered.is_err(),
        "the layered loader was handed the variable"
    );
}

/// An application's section, as the `synod` binary's `[kv]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Greeting {
    text: String,
}

impl AppSection for Greeting {
    const NAME: &'static str = "greeting";

    fn validate(&self, _: &SynodConfig) -> Vec<Problem> {
        if self.text.len() > 5 {
            return vec![Problem {
                field: "greeting.text".into(),
                message: "too long".into(),
            }];
        }
        Vec::new()
    }
}

#[test]
fn an_application_section_is_read_beside_the_runtime_and_unknown_to_it() {
    let text = format!("{BASE}\n[greeting]\ntext = \"hi\"\n");
    let (_, greeting, _) = ConfigSource::text(&text, "test")
        .load_with::<Greeting>()
        .unwrap();
    assert_eq!(greeting.text, "hi");
    assert!(
        has(&problems(&text), &["greeting"]),
        "unknown to the runtime"
    );
    let (_, absent, _) = ConfigSource::text(BASE, "test")
        .load_with::<Greeting>()
        .unwrap();
    assert_eq!(absent.text, "", "defaults when absent");
    let long = format!("{BASE}\n[greeting]\ntext = \"hello!\"\n");
    let error = ConfigSource::text(&long, "test")
        .load_with::<Greeting>()
        .unwrap_err();
    assert!(error.to_string().contains("greeting.text"), "{error}");
    let typo = format!("{BASE}\n[greeting]\ntxt = \"hi\"\n");
    let error = ConfigSource::text(&typo, "test")
        .load_with::<Greeting>()
        .unwrap_err();
    assert!(error.to_string().contains("txt"), "{error}");
}

#[test]
fn no_acceptor_is_an_error() {
    let text = BASE.replace(
        "acceptor-1 = \"n1\"\nacceptor-2 = \"n2\"\nacceptor-3 = \"n3\"\n",
        "",
    );
    assert!(has(
        &problems(&text),
        &["roles", "no acceptor placed", "acceptor-1 ="]
    ));
}

#[test]
fn an_even_acceptor_count_warns() {
    let text = BASE.replace(
        "acceptor-3 = \"n3\"",
        "acceptor-3 = \"n3\"\nacceptor-4 = \"n3\"",
    );
    assert!(has(&warnings(&text), &["4 acceptors", "odd count"]));
}

#[test]
fn fewer_than_three_acceptors_in_a_multi_node_cluster_warns() {
    let text = BASE.replace("acceptor-3 = \"n3\"\n", "");
    assert!(has(&warnings(&text), &["at least 3"]));
}

#[test]
fn a_duplicate_address_is_an_error() {
    let text = BASE.replace("127.0.0.1:7002", "127.0.0.1:7001");
    assert!(has(
        &problems(&text),
        &["nodes.n2.listen", "give each its own address"]
    ));
}

#[test]
fn a_duplicate_role_id_is_an_error() {
    let text = BASE.replace(
        "learner-1 = \"n1\"",
        "learner-1 = \"n1\"\nlearner-01 = \"n2\"",
    );
    assert!(has(
        &problems(&text),
        &["roles.learner-", "names learner-1 again"]
    ));
}

#[test]
fn a_role_on_an_unknown_node_is_an_error() {
    let text = BASE.replace("learner-1 = \"n1\"", "learner-1 = \"n9\"");
    assert!(has(
        &problems(&text),
        &["roles.learner-1", "unknown node \"n9\"", "known nodes"]
    ));
}

#[test]
fn a_malformed_role_name_is_an_error() {
    let text = BASE.replace(
        "learner-1 = \"n1\"",
        "learner-1 = \"n1\"\nleader-1 = \"n1\"",
    );
    assert!(has(
        &problems(&text),
        &["roles.leader-1", "proposer-N, acceptor-N or learner-N"]
    ));
}

#[test]
fn a_heartbeat_not_well_below_the_election_timeout_is_an_error() {
    let text = format!(
        "{BASE}\n[paxos]\nheartbeat_interval = \"200ms\"\nelection_timeout_min = \"300ms\"\n"
    );
    assert!(has(
        &problems(&text),
        &["paxos.heartbeat_interval", "at most a third"]
    ));
}

#[test]
fn a_quorum_timeout_shorter_than_an_election_is_an_error() {
    let text = format!("{BASE}\n[paxos]\nquorum_timeout = \"100ms\"\n");
    assert!(has(
        &problems(&text),
        &["paxos.quorum_timeout", "would depose healthy leaders"]
    ));
}

#[test]
fn a_reply_or_command_budget_that_cannot_fit_in_a_frame_is_an_error() {
    let text = format!(
        "{BASE}\n[transport]\nmax_frame_len = 1048576\n[paxos]\nreply_max_bytes = 1048576\n"
    );
    let list = problems(&text);
    assert!(has(
        &list,
        &["paxos.reply_max_bytes", "would not fit in a frame"]
    ));
    assert!(has(
        &list,
        &["paxos.max_command_bytes", "would not fit in a frame"]
    ));
    let zero = format!("{BASE}\n[paxos]\nreply_max_bytes = 0\n");
    assert!(has(
        &problems(&zero),
        &["paxos.reply_max_bytes", "0 bytes is out of range"]
    ));
}

#[test]
fn an_empty_secret_in_a_multi_node_cluster_is_an_error() {
    let text = BASE.replace("secret = \"s\"", "secret = \"\"");
    assert!(has(
        &problems(&text),
        &["cluster.secret", "multi-node", "secret_file"]
    ));
}

#[test]
fn an_unreadable_data_dir_is_an_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let text = BASE.replace(
        "/tmp/synod-config-test/n2",
        &file.path().display().to_string(),
    );
    assert!(has(
        &problems(&text),
        &["nodes.n2.data_dir", "not a directory"]
    ));
}

#[test]
fn unknown_keys_are_errors() {
    let text = BASE.replace("[cluster]", "[cluster]\nsecrett = \"typo\"");
    assert!(has(&problems(&text), &["secrett"]), "{:?}", problems(&text));
}

#[test]
fn a_missing_file_is_named() {
    let error = SynodConfig::load(std::path::Path::new("/nonexistent/synod.toml")).unwrap_err();
    assert!(
        error.to_string().contains("/nonexistent/synod.toml"),
        "{error}"
    );
}

/// BASE with every node listening on the wildcard `0.0.0.0:7100`, and
/// `advertise` lines from `advertised` (node, value).
fn wildcard(advertised: &[(&str, &str)]) -> String {
    let mut text = BASE
        .replace("127.0.0.1:7001", "0.0.0.0:7100")
        .replace("127.0.0.1:7002", "0.0.0.0:7100")
        .replace("127.0.0.1:7003", "0.0.0.0:7100");
    for (node, value) in advertised {
        let section = format!("[nodes.{node}]\n");
        text = text.replace(&section, &format!("{section}advertise = {value:?}\n"));
    }
    text
}

#[test]
fn wildcard_listen_addresses_may_repeat_across_nodes_but_need_advertise() {
    let all = [
        ("n1", "synod-0.synod:7100"),
        ("n2", "synod-1.synod:7100"),
        ("n3", "10.0.0.3:7100"),
    ];
    let (config, _) = load(&wildcard(&all)).expect("one wildcard per node is fine");
    assert_eq!(config.nodes["n1"].peer_address(), "synod-0.synod:7100");
    let admin = "0.0.0.0:7120".parse().unwrap();
    assert_eq!(config.nodes["n1"].reachable(admin), "synod-0.synod:7120");
    let missing = problems(&wildcard(&all[..2]));
    assert!(
        has(
            &missing,
            &["nodes.n3.advertise", "0.0.0.0:7100", "set advertise"]
        ),
        "{missing:?}"
    );
}

#[test]
fn an_advertise_that_is_not_host_and_port_is_an_error() {
    for bad in ["synod-0", ":7100", "host:0", "host:port"] {
        let text = wildcard(&[("n1", bad), ("n2", "b:1"), ("n3", "c:1")]);
        let found = problems(&text);
        assert!(
            has(&found, &["nodes.n1.advertise", "host:port"]),
            "{bad}: {found:?}"
        );
    }
}

#[test]
fn one_node_may_not_use_a_wildcard_address_twice() {
    let text = wildcard(&[("n1", "a:1"), ("n2", "b:1"), ("n3", "c:1")]).replace(
        "[nodes.n1]\n",
        "[nodes.n1]\nclient_listen = \"0.0.0.0:7100\"\n",
    );
    let found = problems(&text);
    assert!(
        has(&found, &["nodes.n1.", "0.0.0.0:7100 is also"]),
        "{found:?}"
    );
}

/// `BASE` with acceptors 4 and 5 placed too, and `section` appended.
fn with_five_placed(section: &str) -> String {
    let text = BASE.replace(
        "acceptor-3 = \"n3\"",
        "acceptor-3 = \"n3\"\nacceptor-4 = \"n1\"\nacceptor-5 = \"n2\"",
    );
    format!("{text}\n{section}\n")
}

/// `BASE` with five acceptors and `quorums` as the `[quorums]` section.
fn five_acceptors(quorums: &str) -> String {
    with_five_placed(&format!("[quorums]\n{quorums}"))
}

#[test]
fn quorums_are_majorities_unless_configured() {
    let (config, _) = load(BASE).unwrap();
    assert_eq!(config.quorum_system(), synod_core::Quorums::majority(3));
}

#[test]
fn a_phase_two_quorum_alone_gets_the_smallest_phase_one_that_meets_it() {
    let (config, warnings) = load(&five_acceptors("phase2 = 2")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let expected = synod_core::Quorums::Counts {
        phase1: 4,
        phase2: 2,
    };
    assert_eq!(config.quorum_system(), expected);
    let settings = config.cluster_settings();
    assert!(
        settings
            .iter()
            .any(|(k, v)| k == "quorums" && v.contains("phase1: 4")),
        "every node must agree on the quorums: {settings:?}"
    );
}

#[test]
fn quorums_that_need_not_intersect_are_an_error() {
    let found = problems(&five_acceptors("phase1 = 2\nphase2 = 3"));
    assert!(
        has(&found, &["quorums", "must exceed the 5 acceptors"]),
        "{found:?}"
    );
    let found = problems(&five_acceptors("phase2 = 6"));
    assert!(
        has(&found, &["quorums", "not between 1 and the 5"]),
        "{found:?}"
    );
}

#[test]
fn a_grid_must_fill_its_rows_and_not_be_mixed_with_sizes() {
    let found = problems(&five_acceptors("grid_columns = 2"));
    assert!(
        has(&found, &["quorums.grid_columns", "rows of 2"]),
        "{found:?}"
    );
    let found = problems(&five_acceptors("grid_columns = 5\nphase2 = 2"));
    assert!(
        has(&found, &["quorums.grid_columns", "one or the other"]),
        "{found:?}"
    );
}

#[test]
fn an_even_acceptor_count_with_flexible_quorums_does_not_warn_but_a_fragile_system_does() {
    let four = BASE.replace(
        "acceptor-3 = \"n3\"",
        "acceptor-3 = \"n3\"\nacceptor-4 = \"n3\"",
    );
    let flexible = format!("{four}\n[quorums]\nphase1 = 3\nphase2 = 2\n");
    assert!(warnings(&flexible).is_empty());
    let fragile = format!("{BASE}\n[quorums]\nphase2 = 1\n");
    assert!(has(
        &warnings(&fragile),
        &["quorums", "losing one acceptor"]
    ));
}

/// `BASE` with standby acceptors 4 and 5 and `membership` as the
/// `[membership]` section.
fn standby_acceptors(membership: &str) -> String {
    with_five_placed(&format!("[membership]\n{membership}"))
}

#[test]
fn initial_acceptors_set_the_first_configuration_and_its_quorums() {
    let (config, warnings) = load(&standby_acceptors("initial_acceptors = [3, 1, 2]")).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config.initial_acceptors(), vec![1, 2, 3]);
    assert_eq!(config.quorum_system(), synod_core::Quorums::majority(3));
    assert_eq!(
        config.instances(synod_core::Role::Acceptor),
        vec![1, 2, 3, 4, 5],
        "standby acceptors are placed"
    );
    let (all, _) = load(&standby_acceptors("")).unwrap();
    assert_eq!(all.initial_acceptors(), vec![1, 2, 3, 4, 5]);
}

#[test]
fn initial_acceptors_must_be_placed_and_distinct() {
    let found = problems(&standby_acceptors("initial_acceptors = [1, 2, 9]"));
    assert!(
        has(
            &found,
            &["membership.initial_acceptors", "acceptor-9 is not placed"]
        ),
        "{found:?}"
    );
    let found = problems(&standby_acceptors("initial_acceptors = [1, 1, 2]"));
    assert!(
        has(&found, &["membership.initial_acceptors", "distinct"]),
        "{found:?}"
    );
    let found = problems(&standby_acceptors("initial_acceptors = []"));
    assert!(has(&found, &["membership.initial_acceptors"]), "{found:?}");
    let found = problems(&standby_acceptors("initial = [1]"));
    assert!(
        has(&found, &["initial"]),
        "unknown keys are errors: {found:?}"
    );
}

#[test]
fn initial_proposers_and_learners_name_placed_ones_and_default_to_all() {
    let base = BASE.replace(
        "learner-1 = \"n1\"",
        "learner-1 = \"n1\"\nproposer-2 = \"n2\"\nlearner-2 = \"n2\"\nlearner-3 = \"n3\"",
    );
    let (all, _) = load(&base).unwrap();
    assert_eq!(all.initial(Learner), vec![1, 2, 3]);
    use synod_core::Role::{Learner, Proposer};
    assert_eq!(all.initial(Proposer), all.instances(Proposer));
    assert_eq!(all.initial(Learner), all.instances(Learner));
    let text =
        format!("{base}\n[membership]\ninitial_proposers = [2, 1]\ninitial_learners = [3]\n");
    let (some, _) = load(&text).unwrap();
    assert_eq!(some.initial(Proposer), vec![1, 2]);
    assert_eq!(some.initial(Learner), vec![3]);
    let settings = some.cluster_settings();
    assert!(
        settings.contains(&("membership.initial_learners".into(), "[3]".into())),
        "peers compare them: {settings:?}"
    );

    let unplaced = format!("{base}\n[membership]\ninitial_proposers = [7]\n");
    let found = problems(&unplaced);
    assert!(
        has(
            &found,
            &["membership.initial_proposers", "proposer-7 is not placed"]
        ),
        "{found:?}"
    );
    let empty = format!("{base}\n[membership]\ninitial_learners = []\n");
    let found = problems(&empty);
    assert!(
        has(&found, &["membership.initial_learners", "at least one"]),
        "{found:?}"
    );
}
