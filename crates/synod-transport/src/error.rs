//! Why a connection was refused or closed.

/// A transport failure, named after the condition. Each one closes the
/// connection it happened on; the process and its other links go on.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer speaks another protocol version.
    #[error("protocol version {theirs}, this node speaks {ours}")]
    VersionMismatch {
        /// Ours.
        ours: u16,
        /// Theirs.
        theirs: u16,
    },
    /// The peer belongs to another cluster.
    #[error("cluster id {theirs:?}, this node is in {ours:?}")]
    ClusterMismatch {
        /// Ours.
        ours: String,
        /// Theirs.
        theirs: String,
    },
    /// The peer's node name is not in this node's peer list.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// We dialled one node and another answered.
    #[error("expected node {expected:?}, {actual:?} answered")]
    WrongNode {
        /// The node dialled.
        expected: String,
        /// The node that answered.
        actual: String,
    },
    /// The peer's cluster-wide settings differ from this node's.
    #[error(
        "cluster setting {setting} differs: {ours} on this node, {theirs} on the peer; \
         every node of a cluster must use the same"
    )]
    SettingsMismatch {
        /// The setting.
        setting: String,
        /// This node's value ("unset" if it has none).
        ours: String,
        /// The peer's value ("unset" if it has none).
        theirs: String,
    },
    /// The TLS handshake failed (no certificate, one from another CA, a
    /// certificate for another name), or TLS is on one side only.
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    /// The peer's certificate does not name the node it says it is.
    #[error("the peer says it is {claimed:?} but its certificate does not name it")]
    CertificateName {
        /// The node it claimed to be.
        claimed: String,
    },
    /// The peer could not prove it holds the cluster secret.
    #[error("handshake proof does not verify (wrong cluster secret?)")]
    BadProof,
    /// The peer did not complete the handshake in time.
    #[error("handshake not completed within {0:?}")]
    HandshakeTimeout(std::time::Duration),
    /// A frame that does not decode, or a message out of place.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The connection closed.
    #[error("connection closed by peer")]
    Closed,
    /// A socket error, including a length prefix over the frame limit.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}
