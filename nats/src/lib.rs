//! A bridge between [tidelog] logs and NATS JetStream, exactly once in
//! both directions, with no offset store but the log and the stream.
//!
//! - [`Forward`] reads a log through a durable tidelog consumer and
//!   publishes each record to a JetStream subject, with a message id made
//!   of the log's identity and the record's position. It keeps a window of
//!   publishes in flight and commits the consumer only up to the highest
//!   position whose acknowledgements are all in. On start, and after any
//!   failed publish, it asks the stream for the last message on the
//!   subject and goes on after the record it names; every publish names
//!   the stream sequence it must follow (`Nats-Expected-Last-Sequence`), so
//!   the stream never stores a record after a gap, and JetStream's
//!   duplicate window only absorbs the retries of the last window.
//! - [`Ingest`] reads a stream into a log, one record per message, with
//!   the message's stream sequence as the record's tag
//!   ([`tidelog::Appender::append_tagged`]): readers see exactly the
//!   message's bytes. On start it finds the last sequence in the log itself
//!   ([`tidelog::Log::last_tag`]) and resumes after it, so a crash between
//!   an append and anything else neither loses nor duplicates a message.
//!
//! Both reconnect with backoff when the server goes away, and stop with an
//! [`Error`] only on what retrying cannot mend.
//!
//! ```no_run
//! # async fn run() -> Result<(), tidelog_nats::Error> {
//! let log = tidelog::Log::open("/var/lib/orders")?;
//! let report = tidelog_nats::Forward::new("nats://127.0.0.1:4222", "ORDERS", "orders.eu")
//!     .window(512)
//!     .run(&log, |p| eprintln!("{} forwarded", p.records))
//!     .await?;
//! println!("{} records published, {} skipped", report.records, report.skipped);
//! # Ok(())
//! # }
//! ```

mod error;
mod forward;
mod ingest;

pub use error::Error;
pub use forward::{Forward, ForwardReport, DEFAULT_DUPLICATE_WINDOW};
pub use ingest::{Ingest, IngestReport};

use std::time::Duration;

/// What a bridge reports as it goes: after every batch of acknowledgements
/// (forward) or appends (ingest), and when it loses or regains the server.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Progress {
    /// Records published and acknowledged (forward) or appended (ingest)
    /// by this run.
    pub records: u64,
    /// Bytes of those records.
    pub bytes: u64,
    /// Forward: records found in the stream already and not published
    /// again. Ingest: messages received again and not appended again.
    pub skipped: u64,
    /// Forward: the position the consumer has committed. Ingest: the last
    /// stream sequence appended.
    pub at: u64,
    /// How many times the bridge lost the server (or a publish) and
    /// started again from what the stream or the log holds.
    pub restarts: u64,
    /// The last error that made it start again, if any.
    pub last_error: Option<String>,
}

/// The header that carries a forwarded record's message id.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// The message id of the record at `position` of the log `id`:
/// `<32 hex digits>:<position in decimal>`.
pub fn message_id(id: tidelog::LogId, position: tidelog::Position) -> String {
    format!("{id}:{}", position.get())
}

/// The log and position a message id names, if it is one of
/// [`message_id`]'s.
pub fn parse_message_id(s: &str) -> Option<(tidelog::LogId, tidelog::Position)> {
    let (id, pos) = s.split_once(':')?;
    if pos.is_empty() || !pos.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((
        id.parse().ok()?,
        tidelog::Position::from(pos.parse::<u64>().ok()?),
    ))
}

/// Connects, retrying with backoff while the server cannot be reached;
/// refused credentials are permanent.
async fn connect(
    server: &str,
    name: &str,
    progress: &mut dyn FnMut(&Progress),
    state: &mut Progress,
) -> Result<async_nats::Client, Error> {
    let (servers, auth) = split_credentials(server);
    let addrs = servers
        .split(',')
        .map(str::parse::<async_nats::ServerAddr>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Connect {
            server: servers.clone(),
            reason: e.to_string(),
        })?;
    let mut backoff = Backoff::new();
    loop {
        let mut opts = match &auth {
            Some((user, Some(pass))) => {
                async_nats::ConnectOptions::with_user_and_password(user.clone(), pass.clone())
            }
            Some((token, None)) => async_nats::ConnectOptions::with_token(token.clone()),
            None => async_nats::ConnectOptions::new(),
        };
        opts = opts
            .name(name)
            .connection_timeout(Duration::from_secs(2))
            // Reconnect for ever once connected; the bridge decides what
            // to do with publishes that fail meanwhile.
            .max_reconnects(None);
        match opts.connect(addrs.as_slice()).await {
            Ok(c) => return Ok(c),
            Err(e) => {
                use async_nats::ConnectErrorKind as K;
                match e.kind() {
                    K::AuthorizationViolation | K::Authentication | K::ServerParse | K::Tls => {
                        return Err(Error::Connect {
                            server: server.to_owned(),
                            reason: e.to_string(),
                        })
                    }
                    _ => {
                        state.last_error = Some(format!("connecting to {server}: {e}"));
                        progress(state);
                        backoff.wait().await;
                    }
                }
            }
        }
    }
}

/// `server` (one URL or several, comma-separated) without the credentials
/// its URLs carry, and those credentials: `user:password@` or `token@`
/// (the client takes them as options, not from the URL).
fn split_credentials(server: &str) -> (String, Option<(String, Option<String>)>) {
    let mut auth = None;
    let urls: Vec<String> = server
        .split(',')
        .map(|url| {
            let url = url.trim();
            let (scheme, rest) = match url.split_once("://") {
                Some((s, r)) => (Some(s), r),
                None => (None, url),
            };
            let host_end = rest.find('/').unwrap_or(rest.len());
            let Some(at) = rest[..host_end].rfind('@') else {
                return url.to_owned();
            };
            let userinfo = &rest[..at];
            auth.get_or_insert_with(|| match userinfo.split_once(':') {
                Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
                None => (userinfo.to_owned(), None),
            });
            let host = &rest[at + 1..];
            match scheme {
                Some(s) => format!("{s}://{host}"),
                None => host.to_owned(),
            }
        })
        .collect();
    (urls.join(","), auth)
}

/// Exponential backoff from 50 ms to 2 s.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: Duration::from_millis(50),
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_secs(2));
    }

    fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_out_of_the_urls() {
        assert_eq!(
            split_credentials("nats://tide:s3cret@127.0.0.1:4222"),
            (
                "nats://127.0.0.1:4222".to_owned(),
                Some(("tide".to_owned(), Some("s3cret".to_owned())))
            )
        );
        assert_eq!(
            split_credentials("nats://tok@a:1, nats://b:2"),
            (
                "nats://a:1,nats://b:2".to_owned(),
                Some(("tok".to_owned(), None))
            )
        );
        assert_eq!(
            split_credentials("127.0.0.1:4222"),
            ("127.0.0.1:4222".to_owned(), None)
        );
    }

    #[test]
    fn message_ids_round_trip() {
        let id = tidelog::LogId::from_bytes(*b"0123456789abcdef");
        let p = tidelog::Position::from(4096);
        let s = message_id(id, p);
        assert_eq!(s, "30313233343536373839616263646566:4096");
        assert_eq!(parse_message_id(&s), Some((id, p)));
        for bad in [
            "",
            "30313233343536373839616263646566",
            "30313233343536373839616263646566:",
            "30313233343536373839616263646566:+4",
            "3031323334353637383961626364656:4096",
            "uuid-from-someone-else",
        ] {
            assert_eq!(parse_message_id(bad), None, "{bad}");
        }
    }
}
