//! What stops a bridge: everything retrying cannot mend.

use std::fmt;
use std::path::PathBuf;

/// Why a bridge stopped. Lost connections, timeouts and leader elections
/// are not errors: the bridge retries them with backoff and reports them
/// through [`Progress`](crate::Progress).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The log: opening, reading, appending, committing.
    Log(tidelog::Error),
    /// The server refused the connection: credentials, address, TLS.
    Connect {
        /// The server's URL.
        server: String,
        /// What the client said.
        reason: String,
    },
    /// The stream does not exist, and may not or could not be created.
    MissingStream {
        /// The stream's name.
        stream: String,
        /// Why it was not created.
        reason: String,
    },
    /// The stream exists but does not fit the bridge.
    StreamMismatch {
        /// The stream's name.
        stream: String,
        /// What does not fit.
        reason: String,
    },
    /// The stream's last message on the subject did not come from this
    /// log: forwarding needs a subject of its own (see
    /// [`Forward`](crate::Forward)).
    ForeignMessages {
        /// The subject.
        subject: String,
        /// The message id found there, if it had one.
        found: Option<String>,
    },
    /// A record too large for the server (forward), or a message too large
    /// for the log (ingest).
    Oversized {
        /// The record's position (forward) or the message's stream
        /// sequence (ingest).
        at: u64,
        /// Its size in bytes.
        len: usize,
        /// The most the other side takes.
        max: usize,
    },
    /// Another process is ingesting into this log.
    Busy {
        /// The lock file it holds.
        lock: PathBuf,
    },
    /// The server refused a request for a reason retrying cannot mend
    /// (a permission, a limit of the account).
    Refused {
        /// What was refused, and what the server said.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Log(e) => write!(f, "log: {e}"),
            Self::Connect { server, reason } => {
                write!(f, "cannot connect to {server}: {reason}")
            }
            Self::MissingStream { stream, reason } => {
                write!(f, "stream {stream} does not exist: {reason}")
            }
            Self::StreamMismatch { stream, reason } => {
                write!(f, "stream {stream} does not fit: {reason}")
            }
            Self::ForeignMessages { subject, found } => match found {
                Some(id) => write!(
                    f,
                    "the last message on {subject} has message id {id:?}, not one of this \
                     log's: forwarding needs a subject (and a stream) of its own"
                ),
                None => write!(
                    f,
                    "the last message on {subject} has no message id: forwarding needs a \
                     subject (and a stream) of its own"
                ),
            },
            Self::Oversized { at, len, max } => write!(
                f,
                "message of {len} bytes at {at} is larger than the {max} bytes the other \
                 side accepts"
            ),
            Self::Busy { lock } => write!(
                f,
                "another process is ingesting into this log (it holds {})",
                lock.display()
            ),
            Self::Refused { reason } => write!(f, "refused by the server: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Log(e) => Some(e),
            _ => None,
        }
    }
}

impl From<tidelog::Error> for Error {
    fn from(e: tidelog::Error) -> Self {
        Self::Log(e)
    }
}
