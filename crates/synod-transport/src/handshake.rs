//! The connection handshake: both sides prove they hold the cluster secret
//! without sending it.
//!
//! ```text
//! A → B  Hello { version, cluster, node: A, nonce_a }
//! B → A  Hello { version, cluster, node: B, nonce_b }
//! A → B  Proof { HMAC-SHA256(secret, cluster, A, B, nonce_b, nonce_a) }
//! B → A  Proof { HMAC-SHA256(secret, cluster, B, A, nonce_a, nonce_b) }
//! ```
//!
//! Each side checks version, cluster and node name on the Hello, then the
//! peer's proof over its *own* fresh nonce, so a recorded or reflected
//! proof never verifies. Both sides write before they read, so neither
//! waits on the other. The whole exchange runs under a timeout.

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
}

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
    tokio::time::timeout(timeout, exchange(framed, config, expected))
        .await
        .map_err(|_| TransportError::HandshakeTimeout(timeout))?
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
        TransportConfig::new("test", node, secret).with_peer(peer, "127.0.0.1:1".parse().unwrap())
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
