//! The binary's config: the runtime's sections plus `[kv]`, the limits of
//! the key/value state machine (synod-kv), which belong to this binary and
//! not to the state-machine-agnostic runtime.
//!
//! Node commands (`synod node`, `synod up`) layer `SYNOD_*` variables over
//! the file; client commands read only the file (or the built-in local
//! config), so a node override in the environment never changes them.

use anyhow::Result;
use serde::Deserialize;
use std::path::Path;
use synod_kv::KvLimits;
use synod_runtime::{AppSection, ConfigSource, Problem, Range, SynodConfig, check_ranges};

/// The built-in local cluster.
const LOCAL_CONFIG: &str = include_str!("../../../configs/local.toml");

/// `[kv]`: every node of a cluster must use the same (they are part of
/// the state machine's determinism).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct KvSection(pub KvLimits);

impl AppSection for KvSection {
    const NAME: &'static str = "kv";

    fn validate(&self, config: &SynodConfig) -> Vec<Problem> {
        let mut problems = Vec::new();
        check_ranges(&self.ranges(), &mut problems);
        let largest = self.0.largest_command();
        let limit = config.paxos.max_command_bytes;
        if problems.is_empty() && largest > limit {
            problems.push(Problem {
                field: "paxos.max_command_bytes".into(),
                message: format!(
                    "{limit} is below what kv.max_value_len and kv.max_key_len allow ({largest}); \
                     raise it or lower the kv limits"
                ),
            });
        }
        problems
    }

    /// Every `[kv]` limit shapes what the state machine stores and
    /// answers, so all of them must match across nodes.
    fn cluster_settings(&self) -> Vec<(String, String)> {
        self.ranges()
            .into_iter()
            .map(|r| (r.field.to_owned(), r.value.to_string()))
            .collect()
    }
}

impl KvSection {
    /// `[kv]`'s numbers and their ranges.
    pub fn ranges(&self) -> Vec<Range> {
        let kv = &self.0;
        vec![
            Range::bytes("kv.max_key_len", kv.max_key_len, 1, 1 << 20),
            Range::bytes("kv.max_value_len", kv.max_value_len, 0, 1 << 30),
            Range::count(
                "kv.responses_per_client",
                kv.responses_per_client,
                1,
                1 << 16,
            ),
            Range::count("kv.max_clients", kv.max_clients, 1, 1 << 24),
            Range::count("kv.max_txn_ops", kv.max_txn_ops, 1, 1 << 16),
            Range::count("kv.watch_history", kv.watch_history, 1, 1 << 24),
            Range::bytes(
                "kv.watch_history_bytes",
                kv.watch_history_bytes,
                1024,
                1 << 32,
            ),
            Range::count("kv.max_leases", kv.max_leases, 1, 1 << 24),
            Range::count("kv.max_lease_ttl_ms", kv.max_lease_ttl_ms, 1, 1 << 40),
            Range::count("kv.max_lock_waiters", kv.max_lock_waiters, 1, 1 << 20),
        ]
    }
}

/// Whether `SYNOD_*` variables apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overrides {
    /// Node commands: defaults < file < `SYNOD_*`.
    Environment,
    /// Client commands: defaults < file.
    None,
}

/// Load `file` (or the built-in local cluster) with `[kv]`, printing warnings.
pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<(SynodConfig, KvLimits)> {
    let source = match file {
        Some(file) => ConfigSource::file(file),
        None => ConfigSource::text(LOCAL_CONFIG, "built-in local cluster"),
    };
    let source = match overrides {
        Overrides::Environment => source.env(std::env::vars()),
        Overrides::None => source,
    };
    let (config, KvSection(limits), warnings) = source.load_with::<KvSection>()?;
    for warning in warnings {
        eprintln!("synod: warning: {warning}");
    }
    Ok((config, limits))
}

#[cfg(test)]
mod tests {
    use super::*;

    use synod_testkit::TestCluster;

    /// `cluster` as config text, data under the temporary directory.
    fn config_text(cluster: TestCluster) -> String {
        let root = std::env::temp_dir().join("synod-settings-test");
        cluster.render(&root).toml
    }

    fn base() -> TestCluster {
        TestCluster::three_replicas("settings")
    }

    fn load_text(text: &str) -> Result<KvLimits, String> {
        ConfigSource::text(text, "test")
            .load_with::<KvSection>()
            .map(|(_, KvSection(limits), _)| limits)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn kv_limits_come_from_the_kv_section() {
        let text = config_text(base().sections("[kv]\nmax_value_len = 100"));
        assert_eq!(load_text(&text).unwrap().max_value_len, 100);
        assert_eq!(
            load_text(&config_text(base())).unwrap(),
            KvLimits::default()
        );
        let typo = config_text(base().sections("[kv]\nmax_valu_len = 100"));
        assert!(load_text(&typo).unwrap_err().contains("max_valu_len"));
    }

    #[test]
    fn a_command_limit_below_what_the_kv_allows_is_an_error() {
        let small = || base().paxos("max_command_bytes", "65536");
        let error = load_text(&config_text(small())).unwrap_err();
        assert!(
            error.contains("paxos.max_command_bytes") && error.contains("kv.max_value_len"),
            "{error}"
        );
        let fits = config_text(small().sections("[kv]\nmax_value_len = 16384"));
        assert!(load_text(&fits).is_ok(), "{:?}", load_text(&fits));
    }

    #[test]
    fn kv_limits_outside_their_ranges_are_refused_naming_the_field() {
        for (field, value) in [
            ("max_key_len", "0"),
            ("max_value_len", "9223372036854775807"),
            ("responses_per_client", "0"),
            ("max_clients", "0"),
        ] {
            let text = config_text(base().sections(&format!("[kv]\n{field} = {value}")));
            let error = load_text(&text).unwrap_err();
            assert!(
                error.contains(&format!("kv.{field}")),
                "{field} = {value}: {error}"
            );
        }
    }

    #[test]
    fn kv_limits_are_cluster_settings_compared_between_nodes() {
        let text = config_text(base().sections("[kv]\nmax_value_len = 100"));
        let (config, _, _) = ConfigSource::text(&text, "t")
            .load_with::<KvSection>()
            .unwrap();
        let settings = config.cluster_settings();
        assert!(
            settings.contains(&("kv.max_value_len".into(), "100".into())),
            "{settings:?}"
        );
        assert!(
            settings.iter().any(|(k, _)| k == "roles.acceptor-1"),
            "{settings:?}"
        );
    }

    #[test]
    fn every_shipped_config_loads_without_problems() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let (_, _, warnings) = ConfigSource::file(&path)
                    .load_with::<KvSection>()
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(warnings.is_empty(), "{}: {warnings:?}", path.display());
                checked += 1;
            }
        }
        assert!(checked >= 4, "only {checked} configs in {}", dir.display());
    }

    #[test]
    fn the_deployment_configs_load_without_problems() {
        let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/deploy");
        let compose = deploy.join("compose-split-roles.toml");
        let (config, _, warnings) = ConfigSource::file(&compose)
            .load_with::<KvSection>()
            .unwrap_or_else(|e| panic!("{}: {e}", compose.display()));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.nodes.len(), 7);
        // The Kubernetes manifest's ConfigMap, with its secret file here.
        let manifest = std::fs::read_to_string(deploy.join("kubernetes.yaml")).unwrap();
        let block = manifest
            .split("cluster.toml: |\n")
            .nth(1)
            .expect("the ConfigMap's cluster.toml");
        let toml: String = block
            .lines()
            .take_while(|l| l.is_empty() || l.starts_with("    "))
            .map(|l| format!("{}\n", l.trim_start()))
            .collect();
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), "k8s-test-secret").unwrap();
        let toml = toml.replace("/etc/synod-secret/secret", secret.path().to_str().unwrap());
        let (config, _, warnings) = ConfigSource::text(&toml, "kubernetes.yaml")
            .load_with::<KvSection>()
            .unwrap_or_else(|e| panic!("kubernetes.yaml's config: {e}"));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.nodes["synod-1"].peer_address(), "synod-1.synod:7100");
    }

    #[test]
    fn the_built_in_config_loads_without_the_environment() {
        // Whatever SYNOD_* variables the test runner has, a client
        // command's config is the built-in one.
        let (config, _) = load(None, Overrides::None).unwrap();
        assert_eq!(config.nodes.len(), 3);
    }
}
