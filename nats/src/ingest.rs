//! A JetStream stream into a log.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{pull, DeliverPolicy},
    context::GetStreamErrorKind,
    ErrorCode,
};
use futures_util::StreamExt;
use tidelog::{Appender, Log};

use crate::{connect, Backoff, Error, Progress};

/// The lock file an ingest holds in the log's directory.
pub const LOCK_FILE: &str = "ingest.lock";

/// Ingests a JetStream stream into a log, exactly once and in order.
///
/// Every message becomes one record holding exactly the message's payload
/// (headers are not kept), appended with the message's stream sequence as
/// its tag ([`Appender::append_tagged`]). The tag is published in the
/// record's own frame, so the log never holds one without the other. On
/// start the ingest reads the last tag from the log ([`Log::last_tag`]),
/// and asks the stream for the messages after it (and after the last one
/// it appended, after a lost connection): the log is the only offset
/// store, and a crash at any moment neither loses nor duplicates a
/// message. Messages the stream no longer holds (deleted, or aged out) are
/// gaps in the sequence, not errors. A stream whose last sequence is below
/// the log's last tag (made anew) is refused ([`Error::StreamMismatch`]).
///
/// The log's last tagged record is the offset: retention that deletes
/// every segment holding one (a log with much untagged traffic, or an
/// ingest idle for long) makes the next ingest start the stream again
/// from its first message. Keep retention above what the stream holds.
///
/// One ingest per log at a time: it holds an exclusive lock on
/// `ingest.lock` in the log's directory ([`Error::Busy`]). The stream must
/// exist ([`Error::MissingStream`]); other processes may append to the log
/// meanwhile (their records carry no tag).
#[derive(Debug, Clone)]
pub struct Ingest {
    server: String,
    stream: String,
    subject: Option<String>,
    follow: bool,
}

/// What an ingest did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct IngestReport {
    /// Messages appended to the log.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Messages received again after a restart and not appended again.
    pub skipped: u64,
    /// The stream sequence of the last message the log holds (0 if none).
    pub last_sequence: u64,
    /// How many times it lost the server and started again from the log.
    pub restarts: u64,
}

enum Stop {
    Retry(String),
    /// Look at the stream again, at once (nothing went wrong).
    Again,
    Fail(Error),
}

impl From<tidelog::Error> for Stop {
    fn from(e: tidelog::Error) -> Self {
        Self::Fail(Error::Log(e))
    }
}

impl Ingest {
    /// An ingest of `stream` on `server` (a NATS URL, credentials in it if
    /// any).
    pub fn new(server: impl Into<String>, stream: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            stream: stream.into(),
            subject: None,
            follow: false,
        }
    }

    /// Only the stream's messages on `subject` (wildcards allowed);
    /// all of them unless set.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Whether to go on ingesting messages that arrive after the stream's
    /// last one when the run started (no unless set: stop there).
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// Runs the ingest until the stream's end (or for ever when following),
    /// calling `progress` every 200 ms or so and whenever it loses the
    /// server.
    ///
    /// # Errors
    /// Only what retrying cannot mend: see [`Error`]. A message larger
    /// than the log's record size limit is [`Error::Oversized`].
    pub async fn run(
        &self,
        log: &Log,
        mut progress: impl FnMut(&Progress),
    ) -> Result<IngestReport, Error> {
        let _lock = lock(log)?;
        let mut appender = log.appender()?;
        let mut last = log.last_tag()?.map_or(0, |(_, seq)| seq);
        let mut p = Progress {
            at: last,
            ..Progress::default()
        };
        let client = connect(&self.server, "tidelog ingest", &mut progress, &mut p).await?;
        let js = jetstream::new(client);
        let mut backoff = Backoff::new();
        loop {
            let before = p.records;
            match self
                .session(&js, &mut appender, &mut last, &mut p, &mut progress)
                .await
            {
                Ok(()) => {
                    progress(&p);
                    return Ok(IngestReport {
                        records: p.records,
                        bytes: p.bytes,
                        skipped: p.skipped,
                        last_sequence: last,
                        restarts: p.restarts,
                    });
                }
                Err(Stop::Fail(e)) => return Err(e),
                Err(Stop::Again) => {}
                Err(Stop::Retry(why)) => {
                    p.restarts += 1;
                    p.last_error = Some(why);
                    progress(&p);
                    if p.records > before {
                        backoff.reset();
                    }
                    backoff.wait().await;
                }
            }
        }
    }

    async fn session(
        &self,
        js: &jetstream::Context,
        appender: &mut Appender,
        last: &mut u64,
        p: &mut Progress,
        progress: &mut impl FnMut(&Progress),
    ) -> Result<(), Stop> {
        let mut stream = match js.get_stream(&self.stream).await {
            Ok(s) => s,
            Err(e) => {
                return Err(match e.kind() {
                    GetStreamErrorKind::JetStream(je)
                        if je.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Stop::Fail(Error::MissingStream {
                            stream: self.stream.clone(),
                            reason: "ingest reads an existing stream".to_owned(),
                        })
                    }
                    GetStreamErrorKind::JetStream(je)
                        if crate::forward::transient(je.error_code()) =>
                    {
                        Stop::Retry(format!("looking up stream {}: {e}", self.stream))
                    }
                    GetStreamErrorKind::Request => {
                        Stop::Retry(format!("looking up stream {}: {e}", self.stream))
                    }
                    _ => Stop::Fail(Error::Refused {
                        reason: format!("looking up stream {}: {e}", self.stream),
                    }),
                })
            }
        };
        let target = match stream.info().await {
            Ok(info) => info.state.last_sequence,
            Err(e) => return Err(Stop::Retry(format!("stream {}: {e}", self.stream))),
        };
        if target < *last {
            // Sequences never go back in one stream.
            return Err(Stop::Fail(Error::StreamMismatch {
                stream: self.stream.clone(),
                reason: format!(
                    "its last sequence is {target}, but the log holds its message {last}: \
                     the stream was made anew, or the log holds another stream's messages",
                    last = *last
                ),
            }));
        }
        if !self.follow && target <= *last {
            return Ok(());
        }
        let deliver_policy = if *last == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence {
                start_sequence: *last + 1,
            }
        };
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy,
                filter_subject: self.subject.clone().unwrap_or_default(),
                ..Default::default()
            })
            .await
            .map_err(|e| Stop::Retry(format!("creating a consumer on {}: {e}", self.stream)))?;
        if !self.follow && consumer.cached_info().num_pending == 0 {
            // Nothing after the log's last message matches (deleted, or
            // on other subjects).
            return Ok(());
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| Stop::Retry(format!("reading {}: {e}", self.stream)))?;
        let mut reported = Instant::now();
        loop {
            let next = if self.follow {
                messages.next().await
            } else {
                // Messages counted as pending when the consumer was made
                // may be deleted (or age out) before they are delivered:
                // after a quiet spell, a new consumer counts again.
                match tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
                    Ok(next) => next,
                    Err(_) => return Err(Stop::Again),
                }
            };
            let m = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(Stop::Retry(format!("reading {}: {e}", self.stream))),
                None => return Err(Stop::Retry(format!("{} stopped delivering", self.stream))),
            };
            let (seq, pending) = match m.info() {
                Ok(i) => (i.stream_sequence, i.pending),
                Err(e) => return Err(Stop::Retry(format!("a message without its info: {e}"))),
            };
            if seq <= *last {
                // Delivered again after a consumer was made anew.
                p.skipped += 1;
            } else {
                match appender.append_tagged(seq, &m.payload) {
                    Ok(_) => {}
                    Err(tidelog::Error::RecordTooLarge { len, max }) => {
                        return Err(Stop::Fail(Error::Oversized { at: seq, len, max }))
                    }
                    Err(e) => return Err(e.into()),
                }
                *last = seq;
                p.records += 1;
                p.bytes += m.payload.len() as u64;
                p.at = seq;
            }
            if !self.follow && (seq >= target || pending == 0) {
                return Ok(());
            }
            if reported.elapsed() >= Duration::from_millis(200) {
                progress(p);
                reported = Instant::now();
            }
        }
    }
}

/// Takes the exclusive lock of one ingest per log.
fn lock(log: &Log) -> Result<File, Error> {
    let path: PathBuf = log.path().join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            Error::Log(tidelog::Error::Io {
                op: "open the ingest lock",
                path: path.clone(),
                source: e,
            })
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Busy { lock: path }),
        Err(TryLockError::Error(e)) => Err(Error::Log(tidelog::Error::Io {
            op: "lock the ingest lock",
            path,
            source: e,
        })),
    }
}
