//! A pipelined connection to one node: many commands in flight at once,
//! answered in any order. Unlike [`Client`](crate::Client) it does not
//! retry or move to another node: it is for load generators (`synod
//! bench`) and bulk loads, which count each failure themselves.

use crate::wire::{self, Failure, OPEN_SESSION, Reply, Request};
use crate::{ClientConfig, ClientError, failure, receive, send, session_id};
use futures_util::SinkExt;
use std::net::SocketAddr;
use synod_core::CommandId;

/// One connection and its own session.
pub struct Pipeline {
    connection: crate::Connection,
    session: u64,
    seq: u64,
}

/// The answer to one submitted command, by its sequence number.
#[derive(Debug)]
pub struct Answer {
    /// The sequence number [`Pipeline::submit`] returned.
    pub seq: u64,
    /// The command's result payload, or the node's reason it failed.
    pub result: Result<Vec<u8>, Failure>,
}

impl Pipeline {
    /// Connect to `endpoint`, say hello, and open a session (one command
    /// through the log), all within `config.attempt_timeout`.
    pub async fn connect(config: &ClientConfig, endpoint: SocketAddr) -> Result<Self, ClientError> {
        let wait = config.attempt_timeout;
        let opened = tokio::time::timeout(wait, async {
            let mut connection = crate::connect(config, endpoint).await?;
            let nonce = crate::random_u64();
            let open = CommandId {
                client: nonce,
                seq: OPEN_SESSION,
            };
            send(&mut connection, &submit(open, Vec::new())).await?;
            let session = loop {
                match receive(&mut connection).await? {
                    Reply::Response { id, payload } if id == open => break session_id(&payload)?,
                    Reply::Failed { id, error } if id == open => return Err(failure(error)),
                    _ => continue,
                }
            };
            Ok(Self {
                connection,
                session,
                seq: 0,
            })
        });
        opened.await.map_err(|_| ClientError::Timeout(wait))?
    }

    /// Send `payload` as the next command of this session; returns its
    /// sequence number. Does not wait for the answer.
    pub async fn submit(&mut self, payload: Vec<u8>) -> Result<u64, ClientError> {
        let seq = self.queue(payload).await?;
        self.flush().await?;
        Ok(seq)
    }

    /// Like [`submit`](Self::submit), but the command may wait in the
    /// connection's buffer until [`flush`](Self::flush): several commands
    /// then leave in one write.
    pub async fn queue(&mut self, payload: Vec<u8>) -> Result<u64, ClientError> {
        self.seq += 1;
        let id = CommandId {
            client: self.session,
            seq: self.seq,
        };
        self.connection
            .feed(wire::encode(&submit(id, payload)))
            .await
            .map_err(|e: std::io::Error| ClientError::Unavailable(e.to_string()))?;
        Ok(self.seq)
    }

    /// Like [`queue`](Self::queue) for a read outside the log
    /// ([`Request::Query`], answered by the node's learner as applied so
    /// far); its tag counts with the commands' sequence numbers, so its
    /// [`Answer::seq`] is the number returned here.
    pub async fn queue_query(&mut self, payload: Vec<u8>) -> Result<u64, ClientError> {
        self.queue_tagged(|tag| Request::Query { tag, payload })
            .await
    }

    /// Like [`queue_query`](Self::queue_query) for a linearizable read
    /// outside the log ([`Request::Read`], read index).
    pub async fn queue_read(&mut self, payload: Vec<u8>) -> Result<u64, ClientError> {
        self.queue_tagged(|tag| Request::Read { tag, payload })
            .await
    }

    /// Queue the request `make` builds with the next sequence number as
    /// its tag.
    async fn queue_tagged(
        &mut self,
        make: impl FnOnce(u64) -> Request,
    ) -> Result<u64, ClientError> {
        self.seq += 1;
        self.connection
            .feed(wire::encode(&make(self.seq)))
            .await
            .map_err(|e: std::io::Error| ClientError::Unavailable(e.to_string()))?;
        Ok(self.seq)
    }

    /// Send every queued command.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        SinkExt::<bytes::Bytes>::flush(&mut self.connection)
            .await
            .map_err(|e: std::io::Error| ClientError::Unavailable(e.to_string()))
    }

    /// The next answer to arrive. An `Err` means the connection is lost
    /// (commands still in flight may or may not have been applied).
    /// Cancel-safe: no answer is lost if the future is dropped.
    pub async fn next_answer(&mut self) -> Result<Answer, ClientError> {
        loop {
            let (id, result) = match receive(&mut self.connection).await? {
                Reply::Response { id, payload } => (id, Ok(payload)),
                Reply::Failed { id, error } => (id, Err(error)),
                Reply::QueryAnswer { tag, payload } => (self.tagged(tag), Ok(payload)),
                Reply::QueryFailed { tag, error } => (self.tagged(tag), Err(error)),
                other => {
                    return Err(ClientError::Protocol(format!("unexpected reply {other:?}")));
                }
            };
            if id.client == self.session {
                return Ok(Answer {
                    seq: id.seq,
                    result,
                });
            }
        }
    }
}

impl Pipeline {
    /// A query's tag as the id of this session's command it numbers.
    fn tagged(&self, tag: u64) -> CommandId {
        CommandId {
            client: self.session,
            seq: tag,
        }
    }
}

fn submit(id: CommandId, payload: Vec<u8>) -> Request {
    Request::Submit { id, payload }
}
