//! The connection handshake: both sides prove they hold the cluster secret
//! without sending it.
//!
//! ```text
//! A → B  Hello { version, cluster, node: A, nonce_a }
//! B → A  Hello { version, cluster, node: B, nonce_b }
//! A → B  Proof { HMAC-SHA256(secret, cluster, A, B, nonce_b, nonce_a) }
//! B → A  Proof { HMAC-SHA256(secret, cluster, B, A, nonce_a, nonce_b) }
//!
//! A → B  Settings { the cluster-wide settings of A }
//! B → A  Settings { the cluster-wide settings of B }
//! ```
//!
//! Each side checks version, cluster and node name on the Hello, then the
//! peer's proof over its *own* fresh nonce, so a recorded or reflected
//! proof never verifies. Only then are the settings exchanged (nothing of
//! the config reaches a peer that has not proven the secret): a peer whose
//! cluster-wide settings differ is refused, naming the first that differs.
//! Both sides write before they read, so neither waits on the other. The
//! whole exchange runs under a timeout, on frames of at most
//! [`HANDSHAKE_FRAME_MAX`] bytes: an unauthenticated peer cannot make a
//! node buffer a full-size frame.

use crate::config::TransportConfig;
use crate::envelope::PROTOCOL_VERSION;
use crate::error::TransportError;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

type HmacSha256 = Hmac<Sha256>;

/// Handshake frames. Tags are wire tags: never reorder.
#[derive(Debug, Serialize, Deserialize)]
enum HandshakeFrame {
    /// Tag 0.
    Hello {
        version: u16,
        cluster: String,
        node: String,
        nonce: [u8; 32],
    },
    /// Tag 1.
    Proof { mac: [u8; 32] },
    /// Tag 2.
    Settings { settings: Vec<(String, String)> },
}

/// The largest frame read before (and during) the handshake. Handshake
/// frames are a few hundred bytes; the settings list, a line per role.
pub const HANDSHAKE_FRAME_MAX: usize = 64 * 1024;

fn fresh_nonce() -> Result<[u8; 32], TransportError> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce)
        .map_err(|e| TransportError::Io(std::io::Error::other(e.to_string())))?;
    Ok(nonce)
}

fn mac(
    secret: &[u8],
    cluster: &str,
    prover: &str,
    verifier: &str,
    verifier_nonce: &[u8; 32],
    prover_nonce: &[u8; 32],
) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    let transcript = postcard::to_stdvec(&(
        "synod-handshake-v1",
        cluster,
        prover,
        verifier,
        verifier_nonce,
        prover_nonce,
    ))
    .expect("encoding into a Vec cannot fail");
    mac.update(&transcript);
    mac
}

async fn send<S: AsyncWrite + Unpin>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
    frame: &HandshakeFrame,
) -> Result<(), TransportError> {
    let bytes = postcard::to_stdvec(frame).expect("encoding into a Vec cannot fail");
    framed.send(Bytes::from(bytes)).await?;
    Ok(())
}

async fn receive<S: AsyncRead + Unpin>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
) -> Result<HandshakeFrame, TransportError> {
    let frame = framed.next().await.ok_or(TransportError::Closed)??;
    postcard::from_bytes(&frame)
        .map_err(|e| TransportError::Malformed(format!("handshake frame: {e}")))
}

/// Run the handshake on `framed`. `expected` is the node we dialled (None
/// when accepting). Returns the authenticated peer's name.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
    config: &TransportConfig,
    expected: Option<&str>,
) -> Result<String, TransportError> {
    let timeout = config.handshake_timeout;
    let full = framed.codec().max_frame_length();
    framed
        .codec_mut()
        .set_max_frame_length(full.min(HANDSHAKE_FRAME_MAX));
    let peer = tokio::time::timeout(timeout, exchange(framed, config, expected))
        .await
        .map_err(|_| TransportError::HandshakeTimeout(timeout))??;
    framed.codec_mut().set_max_frame_length(full);
    Ok(peer)
}

/// The first setting whose value differs between `ours` and `theirs`.
fn compare_settings(
    ours: &[(String, String)],
    theirs: &[(String, String)],
) -> Result<(), TransportError> {
    let ours: std::collections::BTreeMap<&str, &str> =
        ours.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let theirs: std::collections::BTreeMap<&str, &str> = theirs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let names: std::collections::BTreeSet<&str> =
        ours.keys().chain(theirs.keys()).copied().collect();
    for name in names {
        let (a, b) = (ours.get(name), theirs.get(name));
        if a != b {
            let show = |v: Option<&&str>| v.map_or_else(|| "unset".to_owned(), |v| v.to_string());
            return Err(TransportError::SettingsMismatch {
                setting: name.to_owned(),
                ours: show(a),
                theirs: show(b),
            });
        }
    }
    Ok(())
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
    config: &TransportConfig,
    expected: Option<&str>,
) -> Result<String, TransportError> {
    let my_nonce = fresh_nonce()?;
    let hello = HandshakeFrame::Hello {
        version: PROTOCOL_VERSION,
        cluster: config.cluster_id.clone(),
        node: config.node.clone(),
        nonce: my_nonce,
    };
    send(framed, &hello).await?;
    let HandshakeFrame::Hello {
        version,
        cluster,
        node: peer,
        nonce: their_nonce,
    } = receive(framed).await?
    else {
        return Err(TransportError::Malformed("expected Hello".into()));
    };
    check_hello(config, expected, version, cluster, &peer)?;

    let proof = mac(
        &config.secret,
        &config.cluster_id,
        &config.node,
        &peer,
        &their_nonce,
        &my_nonce,
    );
    send(
        framed,
        &HandshakeFrame::Proof {
            mac: proof.finalize().into_bytes().into(),
        },
    )
    .await?;
    let HandshakeFrame::Proof { mac: their_proof } = receive(framed).await? else {
        return Err(TransportError::Malformed("expected Proof".into()));
    };
    let expected_proof = mac(
        &config.secret,
        &config.cluster_id,
        &peer,
        &config.node,
        &my_nonce,
        &their_nonce,
    );
    expected_proof
        .verify_slice(&their_proof)
        .map_err(|_| TransportError::BadProof)?;
    let settings = config.cluster_settings.clone();
    send(framed, &HandshakeFrame::Settings { settings }).await?;
    let HandshakeFrame::Settings { settings: theirs } = receive(framed).await? else {
        return Err(TransportError::Malformed("expected Settings".into()));
    };
    compare_settings(&config.cluster_settings, &theirs)?;
    Ok(peer)
}

fn check_hello(
    config: &TransportConfig,
    expected: Option<&str>,
    version: u16,
    cluster: String,
    peer: &str,
) -> Result<(), TransportError> {
    if version != PROTOCOL_VERSION {
        return Err(TransportError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: version,
        });
    }
    if cluster != config.cluster_id {
        return Err(TransportError::ClusterMismatch {
            ours: config.cluster_id.clone(),
            theirs: cluster,
        });
    }
    if let Some(expected) = expected
        && expected != peer
    {
        return Err(TransportError::WrongNode {
            expected: expected.into(),
            actual: peer.into(),
        });
    }
    if !config.peers.contains_key(peer) {
        return Err(TransportError::UnknownNode(peer.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::frame_codec;
    use std::time::Duration;

    fn config(node: &str, peer: &str, secret: &[u8]) -> TransportConfig {
        TransportConfig::new("test", node, secret).with_peer(peer, "127.0.0.1:1")
    }

    async fn pair(
        a: TransportConfig,
        b: TransportConfig,
    ) -> (
        Result<String, TransportError>,
        Result<String, TransportError>,
    ) {
        let (x, y) = tokio::io::duplex(4096);
        let mut fa = Framed::new(x, frame_codec(1024));
        let mut fb = Framed::new(y, frame_codec(1024));
        let expected = b.node.clone();
        tokio::join!(
            async move { handshake(&mut fa, &a, Some(&expected)).await },
            async move { handshake(&mut fb, &b, None).await }
        )
    }

    #[tokio::test]
    async fn matching_secrets_authenticate_both_sides() {
        let (a, b) = pair(config("a", "b", b"s3cret"), config("b", "a", b"s3cret")).await;
        assert_eq!(a.unwrap(), "b");
        assert_eq!(b.unwrap(), "a");
    }

    #[tokio::test]
    async fn a_wrong_secret_fails_both_sides() {
        let (a, b) = pair(config("a", "b", b"one"), config("b", "a", b"two")).await;
        assert!(matches!(a, Err(TransportError::BadProof)), "{a:?}");
        assert!(b.is_err());
    }

    #[tokio::test]
    async fn another_cluster_is_refused() {
        let mut other = config("b", "a", b"s");
        other.cluster_id = "other".into();
        let (a, _) = pair(config("a", "b", b"s"), other).await;
        assert!(
            matches!(a, Err(TransportError::ClusterMismatch { .. })),
            "{a:?}"
        );
    }

    #[tokio::test]
    async fn different_cluster_settings_are_refused_naming_the_setting() {
        let setting = |v: &str| vec![("kv.max_value_len".to_owned(), v.to_owned())];
        let mut a = config("a", "b", b"s");
        a.cluster_settings = setting("1024");
        let mut b = config("b", "a", b"s");
        b.cluster_settings = setting("65536");
        let (a_side, b_side) = pair(a.clone(), b).await;
        let message = a_side.unwrap_err().to_string();
        assert!(
            message.contains("kv.max_value_len")
                && message.contains("1024")
                && message.contains("65536"),
            "{message}"
        );
        assert!(b_side.is_err());
        let mut same = config("b", "a", b"s");
        same.cluster_settings = setting("1024");
        let (a_side, b_side) = pair(a, same).await;
        assert_eq!((a_side.unwrap(), b_side.unwrap()), ("b".into(), "a".into()));
    }

    #[tokio::test]
    async fn a_setting_only_one_side_has_is_a_difference() {
        let mut a = config("a", "b", b"s");
        a.cluster_settings = vec![("roles.acceptor-4".into(), "n4".into())];
        let (a_side, _) = pair(a, config("b", "a", b"s")).await;
        let message = a_side.unwrap_err().to_string();
        assert!(
            message.contains("roles.acceptor-4") && message.contains("unset"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_frame_larger_than_a_handshake_is_refused_before_authentication() {
        let (x, y) = tokio::io::duplex(1 << 20);
        let mut framed = Framed::new(x, frame_codec(4 << 20));
        let mut raw = y;
        let length = (HANDSHAKE_FRAME_MAX as u32 + 1).to_be_bytes();
        tokio::io::AsyncWriteExt::write_all(&mut raw, &length)
            .await
            .unwrap();
        let result = handshake(&mut framed, &config("a", "b", b"s"), None).await;
        assert!(
            result.is_err(),
            "a frame past the handshake limit must fail: {result:?}"
        );
    }

    #[tokio::test]
    async fn an_unknown_node_is_refused() {
        let (_, b) = pair(config("a", "b", b"s"), config("b", "someone-else", b"s")).await;
        assert!(matches!(b, Err(TransportError::UnknownNode(_))), "{b:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (x, _y) = tokio::io::duplex(4096);
        let mut framed = Framed::new(x, frame_codec(1024));
        let mut config = config("a", "b", b"s");
        config.handshake_timeout = Duration::from_millis(100);
        let result = handshake(&mut framed, &config, None).await;
        assert!(
            matches!(result, Err(TransportError::HandshakeTimeout(_))),
            "{result:?}"
        );
    }
}
