//! The CLI against a real `synod up` child process: every client command,
//! then SIGKILL, restart from the same data directory, and read back; a
//! backup saved from one cluster and restored into a new one.
//!
//! `synod up` with no flags uses the built-in local cluster's fixed ports
//! (7101-7103, clients 7111-7113), so nothing else may be using them, and
//! the tests that start one take turns ([`PORTS`]).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SYNOD: &str = env!("CARGO_BIN_EXE_synod");

/// Held by each test that runs `synod up` on the fixed local ports.
static PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
const START_LIMIT: Duration = Duration::from_secs(60);

/// A `synod up` child, SIGKILLed when dropped.
struct Cluster(Child);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn up(dir: &Path) -> Cluster {
    let mut child = Command::new(SYNOD)
        .arg("up")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn synod up");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + START_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("ready") => return Cluster(child),
            Ok(_) => continue,
            Err(e) => panic!("synod up never printed its ready line: {e}"),
        }
    }
}

fn synod(args: &[&str]) -> Output {
    Command::new(SYNOD).args(args).output().expect("run synod")
}

fn ok_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(SYNOD)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run synod");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "synod {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn ok(args: &[&str]) -> String {
    let out = synod(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "synod {args:?} failed: {stderr}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn fails(args: &[&str]) -> String {
    let out = synod(args);
    assert!(!out.status.success(), "synod {args:?} should fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line reason: {stderr}"
    );
    stderr
}

#[test]
fn client_commands_work_and_values_survive_a_sigkill() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cluster = up(dir.path());

    assert_eq!(ok(&["put", "greeting", "hello"]), "OK");
    assert_eq!(ok(&["get", "greeting"]), "hello");
    assert_eq!(ok(&["cas", "greeting", "hello", "hi"]), "OK");
    assert!(fails(&["cas", "greeting", "hello", "again"]).contains("compare-and-set failed"));
    assert_eq!(ok(&["cas", "fresh", "--absent", "new"]), "OK");
    assert!(fails(&["cas", "fresh", "--absent", "newer"]).contains("\"new\""));
    assert_eq!(ok(&["put", "doomed", "x"]), "OK");
    assert_eq!(ok(&["delete", "doomed"]), "OK");
    assert!(fails(&["get", "doomed"]).contains("not found"));
    assert!(ok(&["lock", "job", "--owner", "a"]).starts_with("granted, fencing token"));
    assert!(fails(&["lock", "job", "--owner", "b"]).contains("held by a"));
    assert!(fails(&["unlock", "job", "--owner", "b"]).contains("not the lock owner"));
    assert_eq!(ok(&["unlock", "job", "--owner", "a"]), "OK");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["get", "greeting", "--json"])).unwrap();
    assert_eq!(json["value"], "hi");
    // A node override in the environment is for node commands only.
    let endpoint = Command::new(SYNOD)
        .args(["get", "greeting", "--endpoints", "127.0.0.1:7111"])
        .env("SYNOD_NODES__N1__LISTEN", "x")
        .output()
        .expect("run synod");
    let stderr = String::from_utf8_lossy(&endpoint.stderr);
    assert!(endpoint.status.success(), "the override leaked: {stderr}");
    assert_eq!(String::from_utf8_lossy(&endpoint.stdout).trim(), "hi");
    let status = ok(&["status"]);
    assert!(
        status.contains("Healthy") && status.contains("(ballot "),
        "{status}"
    );
    assert!(status.contains("3 of 3 acceptors up"), "{status}");
    assert!(status.contains("learner-3 on n3: applied"), "{status}");
    // A reader that went away (`synod status | head -1`) ends a command
    // quietly: no panic, no error.
    for args in [&["status"][..], &["get", "greeting"], &["status", "--json"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let child = Command::new(SYNOD)
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("run synod");
        let out = child.wait_with_output().expect("it ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{args:?} into a closed pipe: {stderr}"
        );
        assert!(stderr.is_empty(), "{args:?} into a closed pipe: {stderr}");
    }

    drop(cluster); // SIGKILL: no clean shutdown
    let _cluster = up(dir.path());
    assert_eq!(ok(&["get", "greeting"]), "hi");
    assert_eq!(ok(&["get", "fresh"]), "new");
    assert!(fails(&["get", "doomed"]).contains("not found"));
}

#[test]
fn transactions_and_listings_work_through_the_cli() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let _cluster = up(dir.path());

    let create = [
        "txn",
        "--if",
        "missing(app/config)",
        "--then",
        "put app/config v1",
        "--then",
        "put app/owner me",
        "--else",
        "put app/raced yes",
    ];
    assert!(
        ok(&create).starts_with("SUCCESS at revision "),
        "first create"
    );
    assert!(
        ok(&create).starts_with("FAILURE at revision "),
        "second create"
    );
    assert_eq!(ok(&["get", "app/raced"]), "yes");
    let update = [
        "txn",
        "--if",
        "value(app/config) = v1",
        "--if",
        "version(app/config) = 1",
        "--then",
        "put app/config v2",
        "--then",
        "delete app/owner",
        "--json",
    ];
    let json: serde_json::Value = serde_json::from_str(&ok(&update)).unwrap();
    assert_eq!(json["succeeded"], true, "{json}");
    assert!(json["revision"].as_u64().unwrap() > 0);
    assert_eq!(ok(&["put", "other", "x"]), "OK");

    assert_eq!(
        ok(&["list", "--prefix", "app/"]),
        "app/config\tv2\napp/raced\tyes"
    );
    assert_eq!(ok(&["list", "--keys-only"]), "app/config\napp/raced\nother");
    assert_eq!(ok(&["list", "--limit", "1", "--keys-only"]), "app/config");
    assert_eq!(
        ok(&[
            "list",
            "--keys-only",
            "--serializable",
            "--endpoints",
            "127.0.0.1:7111"
        ]),
        "app/config\napp/raced\nother",
        "the node the client asked applied every acknowledged write (it answered them)"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["list", "--prefix", "app/config", "--json"])).unwrap();
    let entry = &json["entries"][0];
    assert_eq!(
        (entry["value"].as_str(), entry["version"].as_u64()),
        (Some("v2"), Some(2))
    );
    assert!(
        entry["modified"].as_u64() > entry["created"].as_u64(),
        "{entry}"
    );

    // A watch from an old revision prints what happened since, in order.
    let watch = Command::new(SYNOD)
        .args([
            "watch",
            "--prefix",
            "app/",
            "--from-revision",
            "1",
            "--count",
            "4",
        ])
        .output()
        .expect("run synod watch");
    let printed = String::from_utf8_lossy(&watch.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    assert!(watch.status.success(), "{printed}");
    let shape: Vec<String> = lines
        .iter()
        .map(|l| l.split_once(' ').map_or("", |(_, rest)| rest).to_owned())
        .collect();
    assert_eq!(
        shape,
        [
            "put app/config v1",
            "put app/owner me",
            "put app/raced yes",
            "put app/config v2"
        ]
    );
    // ... and one from now waits for the next change.
    let follower = Command::new(SYNOD)
        .args(["watch", "--prefix", "app/", "--count", "1", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn synod watch");
    let mut changed = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut follower = follower;
    while follower.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the watch never printed");
        // Each put is a new change; the watch starts at some point among them.
        changed |= ok(&["put", "app/late", "1"]) == "OK";
    }
    assert!(changed);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut follower.stdout.take().unwrap(), &mut out).unwrap();
    let change: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(change["key"], "app/late", "{change}");

    let bad = fails(&["txn", "--if", "size(app/config) > 1", "--then", "put a b"]);
    assert!(bad.contains("unknown field"), "{bad}");
    assert_eq!(
        ok(&["get", "app/config"]),
        "v2",
        "a bad transaction changes nothing"
    );
}

/// `synod ARGS` with `env` and `stdin`: (exit code, stdout, stderr).
fn run_with(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(SYNOD)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run synod");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap().trim().to_owned();
    (
        out.status.code().unwrap_or(-1),
        text(out.stdout),
        text(out.stderr),
    )
}

#[test]
fn scripts_get_endpoints_from_the_environment_values_from_stdin_or_a_file_and_exit_codes_by_outcome()
 {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let _cluster = up(dir.path());
    // Hostnames resolve; SYNOD_ENDPOINTS stands in for --endpoints.
    let env = [("SYNOD_ENDPOINTS", "localhost:7111,localhost:7112")];
    let (code, out, err) = run_with(&["put", "big", "-"], &env, b"from stdin\n");
    assert_eq!((code, out.as_str()), (0, "OK"), "{err}");
    assert_eq!(run_with(&["get", "big"], &env, b"").1, "from stdin");
    let file = dir.path().join("value.bin");
    std::fs::write(&file, b"from a file").unwrap();
    let file = file.to_str().unwrap();
    assert_eq!(run_with(&["put", "f", "--file", file], &env, b"").0, 0);
    assert_eq!(run_with(&["get", "f"], &env, b"").1, "from a file");
    // Not found: 3, with a one-line reason.
    let (code, _, err) = run_with(&["get", "nothing-here"], &env, b"");
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("not found") && err.lines().count() == 1,
        "{err}"
    );
    let (code, out, _) = run_with(&["get", "nothing-here", "--json"], &env, b"");
    assert_eq!(code, 3);
    assert!(out.contains("\"kind\":\"not_found\""), "{out}");
    // Nobody there: 4, within the --timeout given.
    let nobody = [("SYNOD_ENDPOINTS", "127.0.0.1:9")];
    let (code, _, err) = run_with(&["put", "k", "v", "--timeout", "1s"], &nobody, b"");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("unavailable"), "{err}");
    // A bad endpoint is named.
    let (code, _, err) = run_with(&["get", "k", "--endpoints", "no-port-here"], &[], b"");
    assert_eq!(code, 1);
    assert!(err.contains("no-port-here"), "{err}");
}

#[test]
fn log_lines_are_json_with_log_format_json_and_never_coloured_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    // A node whose port is taken: it opens its stores (a debug line each),
    // then fails to bind and exits.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = dir.path().join("c.toml");
    let text = format!(
        "[cluster]\nid = \"c\"\n[nodes.n1]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = {:?}\n\
         [roles]\nproposer-1 = \"n1\"\nacceptor-1 = \"n1\"\nlearner-1 = \"n1\"\n",
        dir.path().join("n1")
    );
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let args = ["node", "--config", config, "--node", "n1", "--init"];
    let debug = [("RUST_LOG", "synod_runtime=debug")];
    let (code, _, err) = run_with(
        &[&args[..], &["--log-format", "json"]].concat(),
        &debug,
        b"",
    );
    assert_eq!(code, 1, "{err}");
    let logged: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(
        logged
            .iter()
            .any(|l| l["fields"]["message"] == "store opened"),
        "{err}"
    );
    assert!(err.contains("cannot listen on"), "{err}");
    let (_, _, text) = run_with(&args, &debug, b"");
    assert!(
        text.contains("store opened") && !text.contains('\u{1b}'),
        "{text}"
    );
}

#[test]
fn a_proposer_logs_when_it_is_elected() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(SYNOD)
        .args(["up", "--log-format", "json"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn synod up");
    let stderr = BufReader::new(child.stderr.take().expect("piped"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let _cluster = Cluster(child);
    let deadline = Instant::now() + START_LIMIT;
    let elected = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("no election was logged");
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["fields"]["message"] == "elected: leading" {
            break event;
        }
    };
    assert_eq!(elected["level"], "INFO", "{elected}");
    assert!(
        elected["fields"]["proposer"]
            .as_str()
            .unwrap()
            .starts_with("proposer-")
    );
}

#[test]
fn an_empty_key_or_lock_owner_is_refused_before_anything_is_sent() {
    // No cluster at this endpoint: the refusal must come first.
    let empty_key = fails(&["put", "", "v", "--endpoints", "127.0.0.1:9"]);
    assert!(empty_key.contains("the key is empty"), "{empty_key}");
    let empty_owner = fails(&["lock", "l", "--owner", "", "--endpoints", "127.0.0.1:9"]);
    assert!(
        empty_owner.contains("the lock owner is empty"),
        "{empty_owner}"
    );
}

#[test]
fn a_client_of_a_stopped_cluster_gets_a_one_line_error() {
    let out = synod(&["get", "k", "--endpoints", "127.0.0.1:9", "--json"]);
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
}

#[test]
fn a_backup_restored_into_a_new_cluster_answers_every_key() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let backup = old.path().join("cluster.snap");
    let backup = backup.to_str().unwrap();
    let cluster = up(old.path());
    let keys: Vec<(String, String)> = (0..20)
        .map(|i| (format!("k{i}"), format!("v{i}")))
        .collect();
    for (key, value) in &keys {
        assert_eq!(ok(&["put", key, value]), "OK");
    }
    assert_eq!(ok(&["delete", "k0"]), "OK");
    let saved = ok(&["snapshot", "save", backup]);
    assert!(
        saved.starts_with("saved a snapshot of every slot below"),
        "{saved}"
    );
    assert_eq!(ok(&["put", "after-the-backup", "x"]), "OK");
    drop(cluster);

    let restored = ok_in(new.path(), &["snapshot", "restore", backup]);
    assert!(restored.contains("n1/acceptor-1"), "{restored}");
    let again = Command::new(SYNOD)
        .args(["snapshot", "restore", backup])
        .current_dir(new.path())
        .output()
        .unwrap();
    assert!(
        !again.status.success(),
        "a second restore onto data is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds data"));

    let _cluster = up(new.path());
    assert!(fails(&["get", "k0"]).contains("not found"));
    for (key, value) in &keys[1..] {
        assert_eq!(&ok(&["get", key]), value, "{key}");
    }
    assert!(fails(&["get", "after-the-backup"]).contains("not found"));
    assert_eq!(ok(&["put", "k1", "changed"]), "OK");
    assert_eq!(ok(&["get", "k1"]), "changed");
}

#[test]
fn bench_local_runs_a_mixed_load_and_writes_its_json_and_svg() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("run");
    let out = ok_in(
        dir.path(),
        &[
            "bench",
            "--local",
            "--clients",
            "4",
            "--window",
            "4",
            "--mix",
            "put=50,get=20,cas=10,sget=10,rget=10",
            "--keys",
            "20",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--json",
            "--out",
            prefix.to_str().unwrap(),
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let result = &json["result"];
    assert!(result["ops"].as_u64().unwrap() > 0, "{result}");
    assert_eq!(result["errors"], serde_json::json!({}), "{result}");
    let outcomes = result["outcomes"].as_object().unwrap();
    assert!(outcomes.contains_key("done"), "puts answered: {outcomes:?}");
    assert!(
        outcomes.contains_key("value") || outcomes.contains_key("not_found"),
        "gets answered: {outcomes:?}"
    );
    let latency = &result["latency_ms"];
    assert!(latency["p50"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap());
    assert_eq!(json["setup"]["mix"], "put=50,get=20,cas=10,sget=10,rget=10");
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(prefix.with_extension("json")).unwrap()).unwrap();
    assert_eq!(written, json);
    let svg = std::fs::read_to_string(prefix.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("latency CDF"));
    // --local ran in a temporary directory, not in ./data.
    assert!(!dir.path().join("data").exists());
}

#[test]
fn bench_open_loop_sends_on_its_schedule_and_no_more() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "bench",
        "--local",
        "--clients",
        "2",
        "--rate",
        "400",
        "--duration",
        "2s",
        "--warmup",
        "500ms",
        "--json",
    ];
    let json: serde_json::Value = serde_json::from_str(&ok_in(dir.path(), &args)).unwrap();
    let result = &json["result"];
    assert_eq!(result["errors"], serde_json::json!({}), "{result}");
    // 400/s for 2 s: 800 on schedule. A client that catches up sends what
    // was due, never more (a few answered just past either edge of the
    // window move the count a little).
    let ops = result["ops"].as_u64().unwrap();
    assert!(
        (400..=880).contains(&ops),
        "{ops} commands at 400/s for 2 s"
    );
}

#[test]
fn bench_against_an_unreachable_cluster_counts_the_errors_and_fails() {
    let out = synod(&[
        "bench",
        "--endpoints",
        "127.0.0.1:9",
        "--clients",
        "2",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--json",
    ]);
    assert!(!out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["result"]["ops"], 0);
    assert!(json["result"]["errors"]["unavailable"].as_u64().unwrap() > 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no command succeeded"), "{stderr}");
}

/// The token a `synod lock ... -- sh -c 'echo token=$SYNOD_LOCK_TOKEN'` printed.
fn token_in(output: &str) -> u64 {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix("token="))
        .unwrap_or_else(|| panic!("no token in {output:?}"));
    line.trim().parse().expect("a number")
}

#[test]
fn leases_and_lease_bound_locks_work_through_the_cli() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let _cluster = up(dir.path());

    // A key on a lease goes with it.
    let granted: serde_json::Value =
        serde_json::from_str(&ok(&["lease", "grant", "30s", "--json"])).unwrap();
    let lease = granted["lease"].as_u64().unwrap().to_string();
    assert_eq!(granted["ttl_ms"], 30_000);
    assert_eq!(ok(&["put", "session", "alive", "--lease", &lease]), "OK");
    assert!(ok(&["lease", "keep-alive", &lease]).starts_with(&format!("lease {lease}")));
    assert!(ok(&["lease", "info", &lease]).contains("TTL 30s"));
    assert_eq!(ok(&["lease", "revoke", &lease]), "OK");
    assert!(fails(&["get", "session"]).contains("not found"));
    assert!(fails(&["lease", "keep-alive", &lease]).contains("does not exist"));
    assert!(fails(&["put", "k", "v", "--lease", &lease]).contains("does not exist"));

    // Held while a command runs, which sees the token; released after.
    let echo = "echo token=$SYNOD_LOCK_TOKEN";
    let first = token_in(&ok(&[
        "lock", "job", "--ttl", "10s", "--", "sh", "-c", echo,
    ]));
    let second = token_in(&ok(&[
        "lock", "job", "--ttl", "10s", "--", "sh", "-c", echo,
    ]));
    assert!(second > first, "tokens grow: {first} then {second}");
    let (status, _, _) = run_with(
        &["lock", "job", "--ttl", "10s", "--", "sh", "-c", "exit 7"],
        &[],
        b"",
    );
    assert_eq!(status, 7, "the command's exit status");

    // A holder SIGKILLed with its command running loses the lock after the
    // TTL; a waiter then gets it with a larger token.
    let mut holder = Command::new(SYNOD)
        .args(["lock", "job", "--ttl", "2s", "--", "sh", "-c"])
        .arg("echo token=$SYNOD_LOCK_TOKEN pid=$$; exec sleep 600")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let held = token_in(line.split_whitespace().next().unwrap());
    let pid = line.split("pid=").nth(1).unwrap().trim().to_owned();
    assert!(fails(&["lock", "job", "--ttl", "10s"]).contains("held by"));
    holder.kill().unwrap(); // SIGKILL: no release, no more keep-alives
    holder.wait().unwrap();
    let _ = Command::new("kill").args(["-9", &pid]).status();
    let waited = ok(&[
        "lock", "job", "--ttl", "10s", "--wait", "--", "sh", "-c", echo,
    ]);
    assert!(token_in(&waited) > held, "{waited} after {held}");
}

#[test]
fn ten_racing_decides_through_three_nodes_all_print_the_one_chosen_value() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let _cluster = up(dir.path());

    let racers: Vec<Child> = (0..10)
        .map(|i| {
            let endpoint = format!("127.0.0.1:{}", 7111 + i % 3);
            Command::new(SYNOD)
                .args(["decide", "leader-of-the-day", &format!("candidate-{i}")])
                .args(["--endpoints", &endpoint])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a racer")
        })
        .collect();
    let printed: Vec<String> = racers
        .into_iter()
        .map(|racer| {
            let out = racer.wait_with_output().unwrap();
            assert!(out.status.success(), "a racer failed");
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
        .collect();
    let chosen = &printed[0];
    assert!(chosen.starts_with("candidate-"), "{chosen}");
    assert!(printed.iter().all(|p| p == chosen), "{printed:?}");
    // Later callers get the same value, whatever they propose.
    assert_eq!(&ok(&["decide", "leader-of-the-day", "late"]), chosen);
    assert_eq!(&ok(&["decided", "leader-of-the-day"]), chosen);
    let (status, _, stderr) = run_with(&["decided", "never-proposed"], &[], b"");
    assert_eq!(status, 3, "{stderr}");

    // Read-index gets through every node see the write just acknowledged.
    for (i, port) in [7111, 7112, 7113].into_iter().enumerate() {
        let endpoint = format!("127.0.0.1:{port}");
        let value = format!("v{i}");
        assert_eq!(
            ok(&["put", "fresh", &value, "--endpoints", &endpoint]),
            "OK"
        );
        for other in [7111, 7112, 7113] {
            let at = format!("127.0.0.1:{other}");
            let read = ok(&["get", "fresh", "--read-index", "--endpoints", &at]);
            assert_eq!(read, value, "a read-index get through {at}");
        }
    }
}

/// A `synod` child with its stdout read line by line from a thread.
fn spawn_lines(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(SYNOD)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn synod");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx)
}

fn next_line(lines: &mpsc::Receiver<String>) -> String {
    lines
        .recv_timeout(START_LIMIT)
        .expect("a line within the start limit")
}

#[test]
fn an_election_hands_over_when_its_leader_is_killed_and_observers_see_every_change() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let _cluster = up(dir.path());

    let (status, _, _) = run_with(&["leader", "web"], &[], b"");
    assert_eq!(status, 3, "nobody leads yet");
    let (mut observer, observed) = spawn_lines(&["observe", "web", "--count", "4"]);
    assert_eq!(next_line(&observed), "(no leader)");

    let (mut alice, alice_says) = spawn_lines(&["campaign", "web", "alice", "--ttl", "2s"]);
    let elected = next_line(&alice_says);
    assert!(elected.starts_with("elected: alice"), "{elected}");
    let token_of = |line: &str| -> u64 {
        let token = line.split("token ").nth(1).unwrap();
        token.trim_end_matches(')').parse().unwrap()
    };
    let (mut bob, bob_says) = spawn_lines(&["campaign", "web", "bob", "--ttl", "5s"]);
    assert_eq!(ok(&["leader", "web"]), "alice");
    assert_eq!(next_line(&observed), "alice");

    alice.kill().unwrap(); // SIGKILL: no resignation; the lease runs out
    alice.wait().unwrap();
    let bob_elected = next_line(&bob_says);
    assert!(bob_elected.starts_with("elected: bob"), "{bob_elected}");
    assert!(token_of(&bob_elected) > token_of(&elected));
    assert_eq!(next_line(&observed), "(no leader)");
    assert_eq!(next_line(&observed), "bob");
    assert!(observer.wait().unwrap().success());

    // `synod resign` from elsewhere ends bob's term; carol, in line, leads.
    let (mut carol, carol_says) = spawn_lines(&["campaign", "web", "carol", "--ttl", "5s"]);
    assert_eq!(ok(&["resign", "web"]), "OK");
    let carol_elected = next_line(&carol_says);
    assert!(
        carol_elected.starts_with("elected: carol"),
        "{carol_elected}"
    );
    assert_eq!(
        bob.wait().unwrap().code(),
        Some(6),
        "bob lost the leadership"
    );

    // Ctrl-C resigns.
    let _ = Command::new("kill")
        .args(["-INT", &carol.id().to_string()])
        .status();
    assert!(carol.wait().unwrap().success(), "a resignation exits 0");
    let (status, _, _) = run_with(&["leader", "web"], &[], b"");
    assert_eq!(status, 3, "nobody leads after the resignation");
}
