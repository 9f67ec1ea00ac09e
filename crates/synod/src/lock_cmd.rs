//! `synod lease grant/keep-alive/revoke/info`, the lease-bound lock
//! `synod lock NAME --ttl 10s [--wait] [-- COMMAND ...]`, and elections:
//! `synod campaign NAME VALUE --ttl 10s [-- COMMAND ...]`, `synod leader
//! NAME`, `synod observe NAME`.
//!
//! With a COMMAND the lock is held while it runs (as `etcdctl lock` does):
//! the lease is kept alive in the background, the command sees
//! `SYNOD_LOCK_NAME`, `SYNOD_LOCK_TOKEN` (the fencing token) and
//! `SYNOD_LOCK_LEASE`, and when it exits the lock is released and its exit
//! status is this command's. If the lease is lost meanwhile (this process
//! was cut off from the cluster for longer than the TTL), the command is
//! killed at once, since another holder may already have the lock, and the
//! exit status is 6.

use crate::output::say;
use anyhow::{Context as _, Result};
use clap::Subcommand;
use serde_json::json;
use std::time::Duration;
use synod_client::{Client, ClientError, Lease};

/// Exit status when the lease was lost while COMMAND ran.
pub const LOCK_LOST_EXIT: i32 = 6;

/// How often the held command is checked for having exited.
const CHILD_POLL: Duration = Duration::from_millis(50);

/// Leases.
#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Start a lease of TTL (e.g. 10s); prints its id. Keys put with
    /// `--lease ID` and locks taken on it go when it ends.
    Grant {
        #[arg(value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Restart lease ID's TTL once.
    KeepAlive { id: u64 },
    /// End lease ID now: its keys are deleted, its locks released.
    Revoke { id: u64 },
    /// Print lease ID's TTL and what is left of it.
    Info { id: u64 },
}

/// What a lease command printed: text, and the JSON object.
pub type Printed = (String, serde_json::Value);

fn lease_printed(lease: Lease) -> Printed {
    let text = format!(
        "lease {} (TTL {}, {} left)",
        lease.id,
        humantime::format_duration(lease.ttl),
        humantime::format_duration(lease.remaining)
    );
    let json = json!({
        "ok": true,
        "lease": lease.id,
        "ttl_ms": lease.ttl.as_millis() as u64,
        "remaining_ms": lease.remaining.as_millis() as u64,
    });
    (text, json)
}

/// Run a lease command.
pub async fn lease(client: &mut Client, command: LeaseCommand) -> Result<Printed, ClientError> {
    match command {
        LeaseCommand::Grant { ttl } => client.grant(ttl).await.map(lease_printed),
        LeaseCommand::KeepAlive { id } => client.keep_alive(id).await.map(lease_printed),
        LeaseCommand::Info { id } => client.lease_info(id).await.map(lease_printed),
        LeaseCommand::Revoke { id } => client
            .revoke(id)
            .await
            .map(|()| ("OK".to_owned(), json!({"ok": true}))),
    }
}

/// A lease-bound lock request.
pub struct LockRequest {
    pub name: String,
    pub owner: String,
    pub ttl: Duration,
    /// Queue for it (for at most this long) if held.
    pub wait: Option<Duration>,
    /// Run this while holding it (empty: take it and leave it to expire).
    pub command: Vec<String>,
}

/// Take the lock; without a command print the token and lease and leave
/// the lock to its TTL; with one, hold it while the command runs.
pub async fn lock(client: &mut Client, request: LockRequest, as_json: bool) -> Result<i32> {
    let mut held = client
        .lock_leased(
            request.name.as_bytes(),
            &request.owner,
            request.ttl,
            request.wait,
        )
        .await
        .map_err(anyhow::Error::new)?;
    let (token, lease) = (held.token(), held.lease());
    if request.command.is_empty() {
        let text = format!(
            "granted, fencing token {token}, lease {lease} (held until the lease expires: \
             keep it with `synod lease keep-alive {lease}`, release with `synod unlock`)"
        );
        let json = json!({"ok": true, "token": token, "lease": lease, "owner": request.owner});
        say!("{}", if as_json { json.to_string() } else { text });
        return Ok(0);
    }
    let env = [
        ("SYNOD_LOCK_NAME", request.name.clone()),
        ("SYNOD_LOCK_TOKEN", token.to_string()),
        ("SYNOD_LOCK_LEASE", lease.to_string()),
    ];
    let mut child = match spawn(&request.command, &env) {
        Ok(child) => child,
        Err(error) => {
            let _ = held.release().await;
            return Err(error);
        }
    };
    match run_while(&mut child, held.lost()).await? {
        Some(status) => {
            held.release().await?;
            Ok(status)
        }
        None => {
            eprintln!(
                "synod: error: lost lock {} (lease {lease} ended) while the command ran; \
                 the command was killed",
                request.name
            );
            Ok(LOCK_LOST_EXIT)
        }
    }
}

/// Start `command` with `env` added. Ctrl-C reaches it too (same process
/// group): from then on it does not stop this process, which waits for the
/// command to exit and then gives up what it holds.
pub fn spawn(command: &[String], env: &[(&str, String)]) -> Result<std::process::Child> {
    let child = std::process::Command::new(&command[0])
        .args(&command[1..])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .spawn()
        .with_context(|| format!("running {:?}", command[0]))?;
    tokio::spawn(tokio::signal::ctrl_c());
    Ok(child)
}

/// Wait for `child` to exit (`Some(status)`), unless `lost` resolves
/// first: then kill it (`None`).
pub async fn run_while(
    child: &mut std::process::Child,
    lost: impl std::future::Future<Output = ()>,
) -> Result<Option<i32>> {
    let mut lost = std::pin::pin!(lost);
    loop {
        tokio::select! {
            () = &mut lost => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            () = tokio::time::sleep(CHILD_POLL) => {
                if let Some(status) = child.try_wait().context("waiting for the command")? {
                    return Ok(Some(status.code().unwrap_or(1)));
                }
            }
        }
    }
}

/// `synod campaign NAME VALUE --ttl T [-- COMMAND]`: wait until elected,
/// print it, then lead while COMMAND runs (or until Ctrl-C), and resign.
pub async fn campaign(
    client: &mut Client,
    name: &str,
    value: &str,
    ttl: Duration,
    command: &[String],
    as_json: bool,
) -> Result<i32> {
    let mut leading = client
        .campaign(name, value.as_bytes(), ttl, None)
        .await
        .map_err(anyhow::Error::new)?;
    let token = leading.token();
    let text = format!("elected: {value} (fencing token {token})");
    let json = json!({"ok": true, "elected": value, "token": token});
    say!("{}", if as_json { json.to_string() } else { text });
    let outcome = if command.is_empty() {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => Some(0),
            () = leading.lost() => None,
        }
    } else {
        let env = [
            ("SYNOD_ELECTION", name.to_owned()),
            ("SYNOD_LEADER_TOKEN", token.to_string()),
        ];
        match spawn(command, &env) {
            Ok(mut child) => run_while(&mut child, leading.lost()).await?,
            Err(error) => {
                let _ = leading.resign().await;
                return Err(error);
            }
        }
    };
    match outcome {
        Some(status) => {
            leading.resign().await?;
            Ok(status)
        }
        None => {
            eprintln!("synod: error: lost the leadership of {name} (its lease ended)");
            Ok(LOCK_LOST_EXIT)
        }
    }
}

/// `synod observe NAME`: the current leader, then every change.
pub async fn observe(
    client: &mut Client,
    name: &str,
    count: Option<usize>,
    as_json: bool,
) -> Result<(), ClientError> {
    let line = |value: Option<&[u8]>| {
        let text = value.map(|v| String::from_utf8_lossy(v).into_owned());
        match (as_json, text) {
            (true, text) => json!({"leader": text}).to_string(),
            (false, Some(text)) => text,
            (false, None) => "(no leader)".to_owned(),
        }
    };
    let mut observer = client.observe(name).await?;
    let mut printed = 0;
    while count.is_none_or(|count| printed < count) {
        let change = observer.next().await?;
        say!("{}", line(change.as_deref()));
        printed += 1;
    }
    Ok(())
}

/// An owner name unique to this process, for a lock taken without
/// `--owner`.
pub fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}/{}", std::process::id())
}
