//! The client commands: `synod put/get/delete/cas/txn/list/watch/lock/unlock/lease/decide/decided/status`,
//! and `synod snapshot save/restore`.
//!
//! They reach the built-in local cluster (`synod up`) with no flags;
//! `--config F` uses a deployment's client ports, cluster id and client
//! token; `--endpoints a,b` (or `SYNOD_ENDPOINTS`) names client ports
//! directly, as `host:port`. Output is plain text for people, or one JSON
//! object with `--json`. Any error is one line and a non-zero exit status
//! that says what happened ([`exit_code`]): 3 not found, 4 cluster
//! unavailable, 5 outcome unknown (a write that timed out may still be
//! applied), 1 anything else.

use crate::output::say;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use synod_client::{Client, ClientConfig, ClientError, ClientTlsConfig};
use synod_runtime::SynodConfig;

/// Where the cluster is and how to print.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// Client endpoints (host:port, comma separated; hostnames resolve).
    #[arg(long, value_delimiter = ',', global = true, env = "SYNOD_ENDPOINTS")]
    pub endpoints: Vec<String>,
    /// How long one command may take, retries included (e.g. 10s, 500ms).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// A cluster config: its nodes' client ports, cluster id and client token.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Cluster id, with --endpoints (default: the local cluster's).
    #[arg(long, global = true)]
    pub cluster: Option<String>,
    /// Client token, with --endpoints.
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// With --endpoints: connect with TLS, trusting this CA (PEM); each
    /// node's certificate must carry the endpoint's IP address.
    #[arg(long, global = true)]
    pub tls_ca: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A client command.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Set KEY to VALUE (`-`: read it from standard input; or --file F).
    Put {
        key: String,
        value: Option<String>,
        /// Read the value from this file.
        #[arg(long, conflicts_with = "value")]
        file: Option<PathBuf>,
        /// Attach the key to this lease: it is deleted when the lease ends.
        #[arg(long)]
        lease: Option<u64>,
    },
    /// Print the value of KEY (linearizable: read through the log).
    Get {
        key: String,
        /// Read the node's applied state instead of going through the log:
        /// faster, but it may miss the latest writes.
        #[arg(long, conflicts_with = "read_index")]
        serializable: bool,
        /// Linearizable without a log slot: the leader confirms it leads
        /// with a quorum round, then the node answers once caught up.
        #[arg(long)]
        read_index: bool,
    },
    /// Remove KEY.
    Delete { key: String },
    /// Set KEY to NEW if its value is EXPECTED (or, with --absent, if it has none).
    Cas {
        key: String,
        /// The value required now (omit with --absent).
        expected: Option<String>,
        /// The value to set.
        new: Option<String>,
        /// Create KEY only if it does not exist: `synod cas KEY --absent NEW`.
        #[arg(long)]
        absent: bool,
    },
    /// Apply the --then operations if every --if compare holds, else the
    /// --else ones, as one command; prints SUCCESS or FAILURE and the
    /// revision (exit 0 either way).
    ///
    /// Compares: `value(KEY) = V`, `version(KEY) > N`, `created(KEY) < N`,
    /// `modified(KEY) != N` (operators = != < >), `exists(KEY)`,
    /// `missing(KEY)`. Operations: `put KEY VALUE`, `delete KEY`.
    Txn {
        /// A compare (repeat: all must hold).
        #[arg(long = "if", value_name = "COMPARE")]
        compares: Vec<String>,
        /// An operation applied if every compare holds (repeat).
        #[arg(long = "then", value_name = "OPERATION")]
        success: Vec<String>,
        /// An operation applied otherwise (repeat).
        #[arg(long = "else", value_name = "OPERATION")]
        failure: Vec<String>,
    },
    /// List the keys starting with --prefix (default: every key) in key
    /// order, with their values (linearizable page by page).
    List {
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many keys.
        #[arg(long)]
        limit: Option<usize>,
        /// Keys only, no values.
        #[arg(long)]
        keys_only: bool,
        /// Read the node's applied state instead of going through the log:
        /// faster, but it may miss the latest writes.
        #[arg(long)]
        serializable: bool,
    },
    /// Print each change to the keys starting with --prefix as it is
    /// applied: `REVISION put KEY VALUE` or `REVISION delete KEY` (one JSON
    /// object per change with --json), from --from-revision on (default:
    /// from now), until --count changes or Ctrl-C.
    Watch {
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// The first revision to print (older ones must still be kept).
        #[arg(long)]
        from_revision: Option<u64>,
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Take lock NAME; prints the fencing token. Without --ttl the lock
    /// lasts until --owner unlocks it. With --ttl it is bound to a new
    /// lease: with `-- COMMAND ...` it is held (the lease kept alive) while
    /// COMMAND runs, which sees SYNOD_LOCK_TOKEN, and released when it
    /// exits (exit status: COMMAND's, or 6 if the lease was lost and
    /// COMMAND killed); without one it lasts until the lease expires.
    Lock {
        name: String,
        /// Who takes it (default with --ttl: this host and process).
        #[arg(long)]
        owner: Option<String>,
        /// Bind the lock to a new lease of this TTL (e.g. 10s).
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
        /// With --ttl: if the lock is held, wait in line for it.
        #[arg(long, requires = "ttl")]
        wait: bool,
        /// With --wait: give up after this long (default: wait as long as
        /// it takes).
        #[arg(long, requires = "wait", value_parser = humantime::parse_duration)]
        wait_timeout: Option<std::time::Duration>,
        /// The command to run while holding the lock (after `--`).
        #[arg(last = true, requires = "ttl")]
        command: Vec<String>,
    },
    /// Propose VALUE for the decide-once register NAME (single-decree
    /// Paxos) and print the value chosen: VALUE, or one proposed earlier
    /// or concurrently. Every caller prints the same.
    Decide { name: String, value: String },
    /// Print the value chosen for register NAME (exit 3 if none is yet).
    Decided { name: String },
    /// Campaign in election NAME with VALUE: wait in line until elected
    /// (leadership is bound to a lease of --ttl, kept alive), print it,
    /// then lead while `-- COMMAND` runs (it sees SYNOD_LEADER_TOKEN) or
    /// until Ctrl-C, and resign. Exit status: COMMAND's, 0 after Ctrl-C,
    /// 6 if the lease was lost.
    Campaign {
        name: String,
        value: String,
        /// The leadership lease's TTL (e.g. 10s).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        ttl: std::time::Duration,
        /// The command to run while leading (after `--`).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Print the value of election NAME's leader (exit 3 if none).
    Leader { name: String },
    /// Make election NAME's leader step down (its lease is revoked; the
    /// next candidate is elected, and the old leader's `synod campaign`
    /// exits 6). Exit 3 if nobody leads.
    Resign { name: String },
    /// Print election NAME's leader, then every change (a new leader's
    /// value, or `(no leader)`), until --count lines or Ctrl-C.
    Observe {
        name: String,
        /// Stop after this many lines.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Leases: grant, keep-alive, revoke, info.
    #[command(subcommand)]
    Lease(crate::lock_cmd::LeaseCommand),
    /// Release lock NAME held by --owner.
    Unlock {
        name: String,
        #[arg(long)]
        owner: String,
    },
    /// Show every node of the config, its roles, the leader, the acceptors'
    /// quorum and the learners' lag; exit 0 healthy, 1 degraded, 2 no
    /// quorum or no leader.
    Status,
}

/// Backups.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Write a fresh snapshot of the cluster (consistent at one slot) to FILE.
    Save { file: PathBuf },
    /// Seed the empty data directories of the config's nodes from FILE
    /// (--config; default the local cluster of `synod up`, under ./data;
    /// --node to restore only that node of it, e.g. the one on this machine).
    Restore {
        file: PathBuf,
        /// Only this node of the config (repeat for several).
        #[arg(long)]
        node: Vec<String>,
    },
}

/// Run a snapshot command.
pub async fn snapshot(command: SnapshotCommand, target: Target, local: &SynodConfig) -> Result<()> {
    match command {
        SnapshotCommand::Save { file } => {
            let client = Client::new(client_config(&target, local)?);
            // Written beside FILE and renamed into place once complete, so
            // FILE is never a partial backup.
            let partial = file.with_extension("partial");
            let mut out = std::io::BufWriter::new(
                std::fs::File::create(&partial)
                    .with_context(|| format!("creating {}", partial.display()))?,
            );
            let saved = client.backup(&mut out).await;
            let finished = saved.and_then(|upto| {
                use std::io::Write as _;
                out.flush()
                    .and_then(|()| out.get_ref().sync_all())
                    .map(|()| upto)
                    .map_err(|e| ClientError::Unavailable(format!("writing the backup: {e}")))
            });
            let upto = match finished {
                Ok(upto) => upto,
                Err(error) => {
                    let _ = std::fs::remove_file(&partial);
                    return print(
                        Err(Failed {
                            error,
                            writes: false,
                        }),
                        target.json,
                    );
                }
            };
            std::fs::rename(&partial, &file)
                .with_context(|| format!("moving the backup to {}", file.display()))?;
            print(
                Ok(Output {
                    text: format!(
                        "saved a snapshot of every slot below {upto} to {}",
                        file.display()
                    ),
                    json: json!({"ok": true, "upto": upto, "file": file}),
                }),
                target.json,
            )
        }
        SnapshotCommand::Restore { file, node } => {
            let config = match &target.config {
                Some(config_file) => {
                    crate::settings::load(Some(config_file), crate::settings::Overrides::None)?.0
                }
                None => local.clone(),
            };
            let restored = synod_runtime::restore_backup_on_disk(&config, &node, &file)
                .with_context(|| format!("restoring {}", file.display()))?;
            let roles: Vec<String> = restored
                .roles
                .iter()
                .map(|(node, role)| format!("{node}/{role}"))
                .collect();
            print(
                Ok(Output {
                    text: format!(
                        "restored every slot below {} into {}",
                        restored.upto,
                        roles.join(", ")
                    ),
                    json: json!({"ok": true, "upto": restored.upto, "roles": roles}),
                }),
                target.json,
            )
        }
    }
}

pub(crate) fn client_config(target: &Target, local: &SynodConfig) -> Result<ClientConfig> {
    let mut config = if let Some(file) = &target.config {
        let (config, _) = crate::settings::load(Some(file), crate::settings::Overrides::None)?;
        from_config(&config, target)?
    } else if !target.endpoints.is_empty() {
        let cluster = target
            .cluster
            .clone()
            .unwrap_or_else(|| local.cluster.id.clone());
        let mut config = ClientConfig::new(resolve(&target.endpoints)?, cluster);
        config.token = target.token.clone();
        if let Some(ca) = &target.tls_ca {
            config.tls = Some(ClientTlsConfig::load(ca)?);
        }
        config
    } else {
        from_config(local, target)?
    };
    if let Some(timeout) = target.timeout {
        config.timeout = timeout;
    }
    Ok(config)
}

/// `host:port` endpoints as addresses (every address a name resolves to).
pub(crate) fn resolve(endpoints: &[String]) -> Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs as _;
    let mut addresses = Vec::new();
    for endpoint in endpoints.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let resolved = endpoint
            .to_socket_addrs()
            .with_context(|| format!("endpoint {endpoint:?}: expected host:port"))?;
        addresses.extend(resolved);
    }
    if addresses.is_empty() {
        bail!("no endpoint given");
    }
    Ok(addresses)
}

/// A put's value: the argument, standard input (`-`), or a file.
fn put_value(value: Option<String>, file: Option<PathBuf>) -> Result<Vec<u8>> {
    match (value.as_deref(), file) {
        (_, Some(file)) => {
            std::fs::read(&file).with_context(|| format!("reading {}", file.display()))
        }
        (Some("-"), None) => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                .context("reading the value from standard input")?;
            Ok(bytes)
        }
        (Some(value), None) => Ok(value.as_bytes().to_vec()),
        (None, None) => {
            bail!("usage: synod put KEY VALUE, synod put KEY - (stdin), or synod put KEY --file F")
        }
    }
}

/// How to reach `config`'s client ports with its own client token.
pub(crate) fn client_config_of(config: &SynodConfig) -> Result<ClientConfig> {
    let mut client = from_config(config, &Target::default())?;
    client.token = config.cluster.client_token.clone();
    Ok(client)
}

fn from_config(config: &SynodConfig, target: &Target) -> Result<ClientConfig> {
    let mut endpoints = Vec::new();
    let mut names = Vec::new();
    for (name, node) in &config.nodes {
        let Some(bound) = node.client_listen else {
            continue;
        };
        for endpoint in resolve(&[node.reachable(bound)])? {
            endpoints.push(endpoint);
            names.push((endpoint, name.clone()));
        }
    }
    if endpoints.is_empty() {
        bail!("the config has no node with a client_listen address");
    }
    let mut client = ClientConfig::new(endpoints, config.cluster.id.clone());
    client.token = target
        .token
        .clone()
        .or_else(|| config.cluster.client_token.clone());
    if let Some(tls) = &config.tls {
        let mut client_tls = ClientTlsConfig::load(&tls.ca_file)?;
        for (endpoint, name) in names {
            client_tls = client_tls.name(endpoint, name);
        }
        client.tls = Some(client_tls);
    }
    Ok(client)
}

/// Run one client command; the exit status follows the result.
pub async fn run(command: ClientCommand, target: Target, local: &SynodConfig) -> Result<()> {
    if let ClientCommand::Status = command {
        return crate::status::run(&target, local).await;
    }
    if let ClientCommand::Watch {
        prefix,
        from_revision,
        count,
    } = command
    {
        let client = Client::new(client_config(&target, local)?);
        let watch = client.watch(prefix.as_bytes(), from_revision);
        return follow(watch, count, target.json).await;
    }
    let config = client_config(&target, local)?;
    let mut client = Client::new(config);
    let writes = command.writes();
    match command {
        ClientCommand::Campaign {
            name,
            value,
            ttl,
            command,
        } => {
            let campaign =
                crate::lock_cmd::campaign(&mut client, &name, &value, ttl, &command, target.json);
            return match campaign.await {
                Ok(0) => Ok(()),
                Ok(status) => std::process::exit(status),
                Err(error) => match error.downcast::<ClientError>() {
                    Ok(error) => print(Err(Failed { error, writes }), target.json),
                    Err(other) => Err(other),
                },
            };
        }
        ClientCommand::Observe { name, count } => {
            let observed = crate::lock_cmd::observe(&mut client, &name, count, target.json).await;
            match observed {
                Ok(()) => Ok(()),
                Err(error) => print(Err(Failed { error, writes }), target.json),
            }
        }
        command => run_one(command, client, writes, target.json).await,
    }
}

/// Run a command that answers once.
async fn run_one(
    command: ClientCommand,
    mut client: Client,
    writes: bool,
    json: bool,
) -> Result<()> {
    let target_json = json;
    if let ClientCommand::Lock {
        name,
        owner,
        ttl: Some(ttl),
        wait,
        wait_timeout,
        command,
    } = command
    {
        let request = crate::lock_cmd::LockRequest {
            name,
            owner: owner.unwrap_or_else(crate::lock_cmd::default_owner),
            ttl,
            // Waiting without a timeout: as long as a day, in practice.
            wait: wait.then(|| wait_timeout.unwrap_or(std::time::Duration::from_secs(86_400))),
            command,
        };
        return match crate::lock_cmd::lock(&mut client, request, target_json).await {
            Ok(0) => Ok(()),
            Ok(status) => std::process::exit(status),
            Err(error) => match error.downcast::<ClientError>() {
                Ok(error) => print(Err(Failed { error, writes }), target_json),
                Err(other) => Err(other),
            },
        };
    }
    let outcome = match command {
        ClientCommand::Put {
            key,
            value,
            file,
            lease,
        } => {
            let value = put_value(value, file)?;
            match lease {
                Some(lease) => client.put_leased(key.as_bytes(), &value, lease).await,
                None => client.put(key.as_bytes(), &value).await,
            }
            .map(|()| done())
        }
        ClientCommand::Decide { name, value } => client
            .decide(&name, value.as_bytes())
            .await
            .map(|v| self::value(&v)),
        ClientCommand::Leader { name } => client.leader(&name).await.map(|v| value(&v)),
        ClientCommand::Resign { name } => match client.resign_leader(&name).await {
            Ok(true) => Ok(done()),
            Ok(false) => Err(ClientError::NotFound),
            Err(e) => Err(e),
        },
        ClientCommand::Decided { name } => match client.decided(&name).await {
            Ok(Some(v)) => Ok(value(&v)),
            Ok(None) => Err(ClientError::NotFound),
            Err(e) => Err(e),
        },
        ClientCommand::Lease(command) => crate::lock_cmd::lease(&mut client, command)
            .await
            .map(|(text, json)| Output { text, json }),
        ClientCommand::Get {
            key,
            serializable,
            read_index,
        } => {
            let got = if serializable {
                client.get_serializable(key.as_bytes()).await
            } else if read_index {
                client.get_read_index(key.as_bytes()).await
            } else {
                client.get(key.as_bytes()).await
            };
            got.map(|v| value(&v))
        }
        ClientCommand::Delete { key } => client.delete(key.as_bytes()).await.map(|()| done()),
        ClientCommand::Cas {
            key,
            expected,
            new,
            absent,
        } => {
            let (expected, new) = match (absent, expected, new) {
                (true, Some(new), None) => (None, new),
                (false, Some(expected), Some(new)) => (Some(expected), new),
                _ => bail!("usage: synod cas KEY EXPECTED NEW, or synod cas KEY --absent NEW"),
            };
            client
                .cas(
                    key.as_bytes(),
                    expected.as_deref().map(str::as_bytes),
                    new.as_bytes(),
                )
                .await
                .map(|()| done())
        }
        ClientCommand::Lock { name, owner, .. } => {
            let owner = owner.context("a lock without --ttl needs --owner")?;
            client
                .lock(name.as_bytes(), &owner)
                .await
                .map(|token| Output {
                    text: format!("granted, fencing token {token}"),
                    json: json!({"ok": true, "token": token}),
                })
        }
        ClientCommand::Unlock { name, owner } => client
            .unlock(name.as_bytes(), &owner)
            .await
            .map(|()| done()),
        ClientCommand::Txn {
            compares,
            success,
            failure,
        } => {
            let compares = compares.iter().map(|c| crate::txn_syntax::compare(c));
            let compares = compares.collect::<Result<Vec<_>>>()?;
            let operations = |texts: &[String]| {
                texts
                    .iter()
                    .map(|o| crate::txn_syntax::operation(o))
                    .collect::<Result<Vec<_>>>()
            };
            let (success, failure) = (operations(&success)?, operations(&failure)?);
            client
                .txn(compares, success, failure)
                .await
                .map(|outcome| Output {
                    text: format!(
                        "{} at revision {}",
                        if outcome.succeeded { "SUCCESS" } else { "FAILURE" },
                        outcome.revision
                    ),
                    json: json!({"ok": true, "succeeded": outcome.succeeded, "revision": outcome.revision}),
                })
        }
        ClientCommand::List {
            prefix,
            limit,
            keys_only,
            serializable,
        } => {
            let listed = if serializable {
                client
                    .list_serializable(prefix.as_bytes(), limit, keys_only)
                    .await
            } else {
                client.list(prefix.as_bytes(), limit, keys_only).await
            };
            listed.map(|entries| listing(&entries))
        }
        ClientCommand::Status
        | ClientCommand::Watch { .. }
        | ClientCommand::Campaign { .. }
        | ClientCommand::Observe { .. } => unreachable!("handled above"),
    };
    print(
        outcome.map_err(|e| Failed { error: e, writes }),
        target_json,
    )
}

impl ClientCommand {
    /// Whether the command changes state (a timeout then leaves its
    /// outcome unknown, rather than "failed").
    fn writes(&self) -> bool {
        !matches!(
            self,
            ClientCommand::Get { .. }
                | ClientCommand::Lease(crate::lock_cmd::LeaseCommand::Info { .. })
                | ClientCommand::Decided { .. }
                | ClientCommand::Leader { .. }
                | ClientCommand::Observe { .. }
                | ClientCommand::List { .. }
                | ClientCommand::Status
                | ClientCommand::Watch { .. }
        )
    }
}

/// A command's error, and whether the command was a write.
struct Failed {
    error: ClientError,
    writes: bool,
}

impl Failed {
    fn kind(&self) -> &'static str {
        match self.error {
            ClientError::Timeout(_) if self.writes => "outcome_unknown",
            _ => kind(&self.error),
        }
    }

    fn message(&self) -> String {
        match &self.error {
            ClientError::Timeout(after) if self.writes => format!(
                "no answer within {after:?}: the outcome is unknown (the write may still be \
                 applied; repeating it is safe only if it is idempotent)"
            ),
            other => other.to_string(),
        }
    }
}

/// The exit status for a failed command: 3 not found, 4 the cluster
/// cannot be reached, 5 a write whose outcome is unknown, 1 otherwise.
pub fn exit_code(kind: &str) -> i32 {
    match kind {
        "not_found" => 3,
        "unavailable" => 4,
        "outcome_unknown" => 5,
        _ => 1,
    }
}

struct Output {
    text: String,
    json: Value,
}

fn done() -> Output {
    Output {
        text: "OK".into(),
        json: json!({"ok": true}),
    }
}

fn value(bytes: &[u8]) -> Output {
    let text = String::from_utf8_lossy(bytes).into_owned();
    Output {
        json: json!({"ok": true, "value": text}),
        text,
    }
}

/// Print changes as they come, until `count` of them.
async fn follow(mut watch: synod_client::Watch, count: Option<usize>, as_json: bool) -> Result<()> {
    let mut printed = 0;
    while count.is_none_or(|count| printed < count) {
        let changes = match watch.next().await {
            Ok(changes) => changes,
            Err(error) => {
                let failed = Failed {
                    error,
                    writes: false,
                };
                return print(Err(failed), as_json);
            }
        };
        for change in changes
            .iter()
            .take(count.map_or(usize::MAX, |c| c - printed))
        {
            say!("{}", change_line(change, as_json));
            printed += 1;
        }
    }
    Ok(())
}

fn change_line(change: &synod_client::Change, as_json: bool) -> String {
    let text_of = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let key = text_of(&change.key);
    match (&change.value, as_json) {
        (Some(value), false) => format!("{} put {key} {}", change.revision, text_of(value)),
        (None, false) => format!("{} delete {key}", change.revision),
        (value, true) => json!({
            "revision": change.revision,
            "key": key,
            "value": value.as_deref().map(text_of),
            "deleted": value.is_none(),
        })
        .to_string(),
    }
}

/// One line per key (`KEY<TAB>VALUE`, or `KEY` for keys only); in JSON,
/// every entry with its version and revisions.
fn listing(entries: &[synod_client::ListEntry]) -> Output {
    let text_of = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let lines: Vec<String> = entries
        .iter()
        .map(|e| match &e.value {
            Some(value) => format!("{}\t{}", text_of(&e.key), text_of(value)),
            None => text_of(&e.key),
        })
        .collect();
    let json_entries: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut entry = json!({
                "key": text_of(&e.key),
                "version": e.version,
                "created": e.created,
                "modified": e.modified,
            });
            if let Some(value) = &e.value {
                entry["value"] = json!(text_of(value));
            }
            entry
        })
        .collect();
    Output {
        text: lines.join("\n"),
        json: json!({"ok": true, "entries": json_entries}),
    }
}

fn print(outcome: Result<Output, Failed>, as_json: bool) -> Result<()> {
    match outcome {
        Ok(output) if as_json => say!("{}", output.json),
        Ok(output) => say!("{}", output.text),
        Err(failed) => {
            let (kind, message) = (failed.kind(), failed.message());
            if as_json {
                say!("{}", json!({"ok": false, "error": message, "kind": kind}));
            } else {
                eprintln!("synod: error: {message}");
            }
            std::process::exit(exit_code(kind));
        }
    }
    Ok(())
}

fn kind(error: &ClientError) -> &'static str {
    match error {
        ClientError::NotFound => "not_found",
        ClientError::CasFailed { .. } => "cas_failed",
        ClientError::Held { .. } => "held",
        ClientError::NotOwner { .. } => "not_owner",
        ClientError::TooLarge { .. } => "too_large",
        ClientError::Timeout(_) => "timeout",
        ClientError::Unavailable(_) => "unavailable",
        ClientError::Refused(_) => "refused",
        ClientError::Protocol(_) => "protocol",
        ClientError::SessionExpired => "session_expired",
        ClientError::Compacted { .. } => "compacted",
        ClientError::NoLease { .. } => "no_lease",
        ClientError::Invalid(_) => "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_timed_out_write_has_an_unknown_outcome_and_its_own_exit_code() {
        let timeout = |writes| Failed {
            error: ClientError::Timeout(Duration::from_secs(2)),
            writes,
        };
        assert_eq!(timeout(true).kind(), "outcome_unknown");
        assert!(timeout(true).message().contains("outcome is unknown"));
        assert_eq!(exit_code(timeout(true).kind()), 5);
        assert_eq!(timeout(false).kind(), "timeout");
        assert_eq!(exit_code(timeout(false).kind()), 1);
        let missing = Failed {
            error: ClientError::NotFound,
            writes: false,
        };
        assert_eq!(exit_code(missing.kind()), 3);
        let nobody = Failed {
            error: ClientError::Unavailable("x".into()),
            writes: true,
        };
        assert_eq!(exit_code(nobody.kind()), 4);
    }
}
