//! `synod lease grant/keep-alive/revoke/info` and the lease-bound lock:
//! `synod lock NAME --ttl 10s [--wait] [-- COMMAND ...]`.
//!
//! With a COMMAND the lock is held while it runs (as `etcdctl lock` does):
//! the lease is kept alive in the background, the command sees
//! `SYNOD_LOCK_NAME`, `SYNOD_LOCK_TOKEN` (the fencing token) and
//! `SYNOD_LOCK_LEASE`, and when it exits the lock is released and its exit
//! status is this command's. If the lease is lost meanwhile (this process
//! was cut off from the cluster for longer than the TTL), the command is
//! killed at once, since another holder may already have the lock, and the
//! exit status is 6.

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
    let held = client
        .lock_leased(
            request.name.as_bytes(),
            &request.owner,
            request.ttl,
            request.wait,
        )
        .await;
    let mut held = match held {
        Ok(held) => held,
        Err(error) => return Err(anyhow::Error::new(error)),
    };
    let (token, lease) = (held.token(), held.lease());
    if request.command.is_empty() {
        let text = format!(
            "granted, fencing token {token}, lease {lease} (held until the lease expires: \
             keep it with `synod lease keep-alive {lease}`, release with `synod unlock`)"
        );
        let json = json!({"ok": true, "token": token, "lease": lease, "owner": request.owner});
        println!("{}", if as_json { json.to_string() } else { text });
        return Ok(0);
    }
    let spawned = std::process::Command::new(&request.command[0])
        .args(&request.command[1..])
        .env("SYNOD_LOCK_NAME", &request.name)
        .env("SYNOD_LOCK_TOKEN", token.to_string())
        .env("SYNOD_LOCK_LEASE", lease.to_string())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            let _ = held.release().await;
            let running = format!("running {:?}", request.command[0]);
            return Err(anyhow::Error::new(error).context(running));
        }
    };
    // Ctrl-C reaches the command too (same process group): from now on it
    // does not stop this process, which waits for the command to exit and
    // then releases the lock.
    tokio::spawn(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            () = held.lost() => {
                let _ = child.kill();
                let _ = child.wait();
                eprintln!(
                    "synod: error: lost lock {} (lease {lease} ended) while the command ran; \
                     the command was killed",
                    request.name
                );
                return Ok(LOCK_LOST_EXIT);
            }
            () = tokio::time::sleep(CHILD_POLL) => {
                if let Some(status) = child.try_wait().context("waiting for the command")? {
                    held.release().await?;
                    return Ok(status.code().unwrap_or(1));
                }
            }
        }
    }
}

/// An owner name unique to this process, for a lock taken without
/// `--owner`.
pub fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    format!("{host}/{}", std::process::id())
}
