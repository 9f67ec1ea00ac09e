//! A TLS cluster of real `synod node` processes: the CLI reaches it
//! through the config (TLS to each client port, checked against the
//! node's name) or through `--endpoints` with `--tls-ca` (checked against
//! the address); a client without TLS is refused.

use std::process::Command;
use synod_integration::Deployment;
use synod_testkit::{TestCa, TestCluster};

fn synod(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(synod_integration::synod_binary())
        .args(args)
        .output()
        .expect("run synod");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    )
}

/// `synod get k` through `endpoint` alone, with `extra` flags.
fn get_through(endpoint: &str, extra: &[&str]) -> (bool, String, String) {
    let mut args = vec!["get", "k", "--endpoints", endpoint, "--cluster", "it"];
    args.extend_from_slice(extra);
    synod(&args)
}

#[tokio::test]
async fn the_cli_reaches_a_tls_cluster_and_a_plain_client_is_refused() {
    let ca = TestCa::new();
    let mut deployment = Deployment::new(TestCluster::three_replicas("it").tls(&ca));
    deployment.start_all();
    let config = deployment.config_path().to_str().unwrap().to_owned();
    let (ok, out, err) = synod(&["put", "k", "secret-value", "--config", &config]);
    assert!(ok, "put over TLS: {out} {err}");
    let (ok, out, err) = synod(&["get", "k", "--config", &config]);
    assert!(ok && out == "secret-value", "get over TLS: {out} {err}");

    let endpoint = deployment.endpoint("n2").to_string();
    let ca_file = ca.ca_file().to_str().unwrap();
    let (ok, out, err) = get_through(&endpoint, &["--tls-ca", ca_file]);
    assert!(
        ok && out == "secret-value",
        "get by address over TLS: {out} {err}"
    );

    let (ok, out, err) = get_through(&endpoint, &["--timeout", "2s"]);
    assert!(!ok, "a client without TLS was served: {out}");
    assert!(!err.is_empty(), "a refused client is told why");

    let other_ca = TestCa::new();
    let foreign_ca = other_ca.ca_file().to_str().unwrap();
    let (ok, _, err) = get_through(&endpoint, &["--tls-ca", foreign_ca, "--timeout", "2s"]);
    assert!(
        !ok && err.contains("TLS"),
        "a client trusting another CA: {err}"
    );
}
