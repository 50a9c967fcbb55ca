//! A log to a JetStream subject.

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    context::{GetStreamErrorKind, PublishAckFuture, PublishErrorKind},
    message::PublishMessage,
    stream::{self, LastRawMessageErrorKind},
    ErrorCode,
};
use bytes::Bytes;
use tidelog::{Log, LogId, Position};

use crate::{connect, parse_message_id, Backoff, Error, Progress, MSG_ID};

/// Forwards a log to a JetStream subject, exactly once and in order.
///
/// Reads through the durable tidelog consumer [`consumer`](Self::consumer)
/// (`nats-forward` unless set), publishes every record to the subject with
/// the message id `<log id>:<position>` ([`message_id`](crate::message_id)), keeps
/// [`window`](Self::window) publishes in flight, and commits the consumer up
/// to the highest position whose acknowledgements, and all before it, are
/// in.
///
/// **Exactly once.** On start and after every failure (a lost connection,
/// a timed-out acknowledgement, a leader election), the forwarder waits
/// for every publish in flight to settle, asks the stream for its last
/// message on the subject, and resumes after the record whose position
/// that message's id names: what the stream holds is not published again,
/// whatever the duplicate window. Every publish names the stream sequence
/// it must follow (`Nats-Expected-Last-Sequence`: the stream's last
/// sequence when the run started, plus the publishes before it), so the
/// stream refuses a record unless it holds every record published before
/// it in the run: what a failure leaves in the stream is always every
/// record up to some position, with no gap. (A publish that was in flight
/// when the forwarder resumed, and reaches the stream later, is stored
/// only if it is the next record in order; otherwise its expected
/// sequence, or its id, makes the stream refuse it.) So the
/// stream must be the forwarder's alone: one subject, and no other
/// publisher on it ([`Error::StreamMismatch`], [`Error::ForeignMessages`]).
/// (Naming the predecessor's message id instead, `Nats-Expected-Last-Msg-Id`,
/// holds the same guarantee but was slower: 118 to 134 k records of 64 B
/// a second in four runs of `tidelog bench --scenario nats`, against 140
/// to 148 k.)
///
/// The stream is created if missing ([`create_stream`](Self::create_stream)):
/// file storage, [`replicas`](Self::replicas) replicas, limits retention, a
/// [`duplicate_window`](Self::duplicate_window) of two minutes. An
/// existing stream must have the subject as
/// its only one, limits retention (work-queue or interest retention would
/// delete the messages the forwarder looks up) and acknowledgements on.
#[derive(Debug, Clone)]
pub struct Forward {
    server: String,
    stream: String,
    subject: String,
    consumer: String,
    window: usize,
    replicas: Option<usize>,
    create: bool,
    follow: bool,
    duplicate_window: Duration,
}

/// The duplicate window of the streams [`Forward`] creates: JetStream's
/// default, two minutes. (Ten seconds measured no faster:
/// `tidelog bench --scenario nats`, 64 B, 72.0 and 71.8 % of a plain
/// publisher against 73.8 and 74.2 %.)
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What a forward did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ForwardReport {
    /// Records published and acknowledged as new.
    pub records: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Records not published because the stream held them already, or
    /// acknowledged as duplicates.
    pub skipped: u64,
    /// The position the consumer has committed: everything below it is in
    /// the stream.
    pub committed: Position,
    /// How many times it started again from the stream's last message.
    pub restarts: u64,
}

/// Why a session ended before its end.
enum Stop {
    /// Start again from the stream's last message, after a backoff.
    Retry(String),
    /// Give up.
    Fail(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Self::Fail(e)
    }
}

impl From<tidelog::Error> for Stop {
    fn from(e: tidelog::Error) -> Self {
        Self::Fail(Error::Log(e))
    }
}

/// A publish in flight: its record's position, the position after it, its
/// size, its acknowledgement.
type InFlight = VecDeque<(Position, Position, u64, PublishAckFuture)>;

impl Forward {
    /// A forward of a log to `subject` of `stream` on `server` (a NATS URL,
    /// credentials in it if any: `nats://user:password@host:4222`).
    pub fn new(
        server: impl Into<String>,
        stream: impl Into<String>,
        subject: impl Into<String>,
    ) -> Self {
        Self {
            server: server.into(),
            stream: stream.into(),
            subject: subject.into(),
            consumer: "nats-forward".to_owned(),
            window: 256,
            replicas: None,
            create: true,
            follow: false,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        }
    }

    /// The duplicate window of a stream this creates
    /// ([`DEFAULT_DUPLICATE_WINDOW`] unless set). Exactly-once does not
    /// depend on it (see above: a publish that outlived the window is still
    /// refused by its expected sequence); the server keeps every message
    /// id of the window in memory, 14 million of them for two minutes at
    /// 120,000 records a second, so a high-rate forward may want less.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window.max(Duration::from_millis(100));
        self
    }

    /// The name of the durable tidelog consumer to read through
    /// (`nats-forward` unless set). One forwarder per name at a time.
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }

    /// How many publishes may await their acknowledgement at once (256
    /// unless set; at least 1).
    pub fn window(mut self, n: usize) -> Self {
        self.window = n.clamp(1, 4096);
        self
    }

    /// The replicas of a stream this creates (1 unless set); an existing
    /// stream with another count is refused when this is set.
    pub fn replicas(mut self, n: usize) -> Self {
        self.replicas = Some(n.max(1));
        self
    }

    /// Whether to create the stream when it is missing (yes unless set).
    pub fn create_stream(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Whether to go on forwarding records appended after the end of the
    /// log as it was when the run started (no unless set: stop there).
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// Runs the forward until the end of the log (or for ever when
    /// following), calling `progress` every 200 ms or so and whenever it
    /// loses the server.
    ///
    /// # Errors
    /// Only what retrying cannot mend: see [`Error`].
    pub async fn run(
        &self,
        log: &Log,
        mut progress: impl FnMut(&Progress),
    ) -> Result<ForwardReport, Error> {
        let id = log.id();
        let end = if self.follow {
            None
        } else {
            Some(log.end_position()?)
        };
        let mut p = Progress::default();
        let client = connect(&self.server, "tidelog forward", &mut progress, &mut p).await?;
        let max_payload = client.server_info().max_payload;
        let js = jetstream::new(client);
        let subject = async_nats::Subject::from(self.subject.as_str());
        let mut backoff = Backoff::new();
        let mut report = ForwardReport::default();
        loop {
            let before = p.records + p.skipped;
            let run = Session {
                fwd: self,
                js: &js,
                subject: subject.clone(),
                id,
                id_prefix: format!("{id}:"),
                end,
                max_payload,
            };
            match run.run(log, &mut p, &mut progress, &mut report).await {
                Ok(()) => {
                    progress(&p);
                    report.restarts = p.restarts;
                    return Ok(report);
                }
                Err(Stop::Fail(e)) => return Err(e),
                Err(Stop::Retry(why)) => {
                    p.restarts += 1;
                    p.last_error = Some(why);
                    progress(&p);
                    if p.records + p.skipped > before {
                        backoff.reset();
                    }
                    backoff.wait().await;
                }
            }
        }
    }

    async fn ensure_stream(&self, js: &jetstream::Context) -> Result<stream::Stream, Stop> {
        match js.get_stream(&self.stream).await {
            Ok(s) => {
                self.check_fit(&s.cached_info().config)?;
                Ok(s)
            }
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(je)
                    if je.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    if !self.create {
                        return Err(Stop::Fail(Error::MissingStream {
                            stream: self.stream.clone(),
                            reason: "creating it was not allowed".to_owned(),
                        }));
                    }
                    let config = stream::Config {
                        name: self.stream.clone(),
                        subjects: vec![self.subject.clone()],
                        storage: stream::StorageType::File,
                        num_replicas: self.replicas.unwrap_or(1),
                        retention: stream::RetentionPolicy::Limits,
                        duplicate_window: self.duplicate_window,
                        ..Default::default()
                    };
                    js.create_stream(config).await.map_err(|e| {
                        use async_nats::jetstream::context::CreateStreamErrorKind as C;
                        match e.kind() {
                            // A cluster electing its leader, another
                            // process creating the same stream: look again.
                            C::JetStream(je) if transient(je.error_code()) => {
                                Stop::Retry(format!("creating stream {}: {e}", self.stream))
                            }
                            _ => Stop::Fail(Error::MissingStream {
                                stream: self.stream.clone(),
                                reason: format!(
                                    "creating it failed: {e} (may this user create streams?)"
                                ),
                            }),
                        }
                    })
                }
                GetStreamErrorKind::JetStream(je) if transient(je.error_code()) => Err(
                    Stop::Retry(format!("looking up stream {}: {e}", self.stream)),
                ),
                GetStreamErrorKind::Request => Err(Stop::Retry(format!(
                    "looking up stream {}: {e}",
                    self.stream
                ))),
                _ => Err(Stop::Fail(Error::Refused {
                    reason: format!("looking up stream {}: {e}", self.stream),
                })),
            },
        }
    }

    fn check_fit(&self, c: &stream::Config) -> Result<(), Error> {
        let mismatch = |reason: String| {
            Err(Error::StreamMismatch {
                stream: self.stream.clone(),
                reason,
            })
        };
        if c.subjects != [self.subject.as_str()] {
            return mismatch(format!(
                "its subjects are {:?}; forwarding needs a stream whose only subject is {:?} \
                 (publishes are ordered by the stream's sequence)",
                c.subjects, self.subject
            ));
        }
        if c.retention != stream::RetentionPolicy::Limits {
            return mismatch(format!(
                "its retention is {:?}; forwarding needs limits retention (the messages it \
                 looks up on restart must stay)",
                c.retention
            ));
        }
        if c.no_ack {
            return mismatch("it does not acknowledge publishes (no_ack)".to_owned());
        }
        if c.mirror.is_some() || c.sources.as_ref().is_some_and(|s| !s.is_empty()) {
            return mismatch(
                "it mirrors or sources other streams, whose messages would move its sequence"
                    .to_owned(),
            );
        }
        if let Some(n) = self.replicas {
            if c.num_replicas != n {
                return mismatch(format!("it has {} replicas, not {n}", c.num_replicas));
            }
        }
        Ok(())
    }

    /// The position of the last record of this log the stream holds on the
    /// subject, and that message's stream sequence.
    async fn stream_tail(
        &self,
        s: &stream::Stream,
        id: LogId,
    ) -> Result<Option<(Position, u64)>, Stop> {
        let last = match s.get_last_raw_message_by_subject(&self.subject).await {
            Ok(m) => m,
            Err(e) => match e.kind() {
                LastRawMessageErrorKind::NoMessageFound => match self.probe_last(s).await? {
                    Some(m) => m,
                    None => return Ok(None),
                },
                _ => {
                    return Err(Stop::Retry(format!(
                        "looking up the last message on {}: {e}",
                        self.subject
                    )))
                }
            },
        };
        let found = last.headers.get(MSG_ID).map(|v| v.as_str().to_owned());
        match found.as_deref().and_then(parse_message_id) {
            Some((log, pos)) if log == id => Ok(Some((pos, last.sequence))),
            _ => Err(Stop::Fail(Error::ForeignMessages {
                subject: self.subject.clone(),
                found,
            })),
        }
    }

    /// The stream's last message found by sequence, down from its last
    /// sequence, when the lookup by subject found none although the
    /// stream holds messages (nats-server 2.9 answers "no message found"
    /// by subject once the newest messages were deleted). The stream is
    /// the forwarder's alone, so its last message is the subject's.
    async fn probe_last(
        &self,
        s: &stream::Stream,
    ) -> Result<Option<async_nats::jetstream::message::StreamMessage>, Stop> {
        let state = &s.cached_info().state;
        if state.messages == 0 {
            return Ok(None);
        }
        let floor = state
            .first_sequence
            .max(state.last_sequence.saturating_sub(100_000));
        let mut seq = state.last_sequence;
        while seq >= floor && seq > 0 {
            match s.get_raw_message(seq).await {
                Ok(m) => return Ok(Some(m)),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => seq -= 1,
                Err(e) => {
                    return Err(Stop::Retry(format!(
                        "looking up message {seq} of {}: {e}",
                        self.stream
                    )))
                }
            }
        }
        Err(Stop::Fail(Error::StreamMismatch {
            stream: self.stream.clone(),
            reason: format!(
                "it holds {} messages, but none of the last 100,000 sequences up to {}",
                state.messages, state.last_sequence
            ),
        }))
    }
}

/// One run from the stream's last message until the end or a failure.
struct Session<'a> {
    fwd: &'a Forward,
    js: &'a jetstream::Context,
    subject: async_nats::Subject,
    id: LogId,
    /// `<log id>:`, the start of every message id.
    id_prefix: String,
    end: Option<Position>,
    max_payload: usize,
}

impl Session<'_> {
    /// [`message_id`](crate::message_id) of `pos`, from the log id's digits
    /// formatted once.
    fn message_id(&self, pos: Position) -> String {
        let mut id = String::with_capacity(self.id_prefix.len() + 20);
        id.push_str(&self.id_prefix);
        let mut digits = [0u8; 20];
        let mut n = pos.get();
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // ASCII digits.
        id.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
        debug_assert_eq!(id, crate::message_id(self.id, pos));
        id
    }

    /// Refuses a stream whose last record of this log does not fit the
    /// log and the consumer: one past the log's end (a log restored from
    /// an older copy would skip its new records), or one before what the
    /// consumer committed (acknowledged records missing from the stream:
    /// purged, or lost by the server), which resuming would leave as a
    /// gap.
    fn check_tail(&self, log: &Log, tail: Position, committed: Position) -> Result<(), Stop> {
        let mismatch = |reason: String| {
            Stop::Fail(Error::StreamMismatch {
                stream: self.fwd.stream.clone(),
                reason,
            })
        };
        let end = log.end_position()?;
        if tail >= end {
            return Err(mismatch(format!(
                "its last message is this log's record at {tail}, at or past the log's end \
                 ({end}): is the log an older copy?"
            )));
        }
        if tail < committed {
            // The record after the tail; unreadable if retention took it.
            let next = log
                .reader_at(tail)
                .ok()
                .and_then(|mut r| r.try_next().ok().flatten().map(|r| r.next_position()));
            if let Some(next) = next.filter(|&n| n < committed) {
                return Err(mismatch(format!(
                    "its last message is this log's record at {tail}, but consumer {} \
                     committed up to {committed}: acknowledged records are missing from the \
                     stream (purged, or lost by the server). To publish them again once the \
                     stream's duplicate window has passed: tidelog consumers {} reset {} --to \
                     {next}",
                    self.fwd.consumer,
                    log.path().display(),
                    self.fwd.consumer
                )));
            }
        }
        Ok(())
    }

    async fn run(
        &self,
        log: &Log,
        p: &mut Progress,
        progress: &mut impl FnMut(&Progress),
        report: &mut ForwardReport,
    ) -> Result<(), Stop> {
        let stream = self.fwd.ensure_stream(self.js).await?;
        let max = match usize::try_from(stream.cached_info().config.max_message_size) {
            Ok(m) if m > 0 => m.min(self.max_payload),
            _ => self.max_payload,
        };
        let tail = self.fwd.stream_tail(&stream, self.id).await?;
        // Resumes at the committed position: everything below it is in the
        // stream.
        let mut consumer = log.consumer(&self.fwd.consumer)?;
        if let Some((t, _)) = tail {
            self.check_tail(log, t, consumer.committed())?;
        }
        let mut inflight = InFlight::new();
        // The stream's sequence before the next publish, if everything
        // before it is stored: the stream is the forwarder's alone, so its
        // sequence counts this forwarder's records. Each publish names it
        // (`Nats-Expected-Last-Sequence`) and is refused unless every
        // publish before it was stored. A straggler stored after the tail
        // was read makes the first publish fail (and the session start
        // again), not a later one succeed.
        // The stream's last sequence read before the tail, or the tail's if
        // a straggler was stored in between; the former is the larger when
        // the newest messages were deleted (sequences are not reused).
        let mut expect = stream
            .cached_info()
            .state
            .last_sequence
            .max(tail.map_or(0, |(_, seq)| seq));
        let tail = tail.map(|(t, _)| t);
        let mut reported = Instant::now();
        loop {
            // Without `follow`, nothing at or past the end of the log as it
            // was when the run started is read.
            let at_end = self.end.is_some_and(|end| consumer.position() >= end);
            let next = if at_end {
                None
            } else {
                match consumer.try_next()? {
                    Some(r) => Some((r.position(), r.next_position(), Bytes::copy_from_slice(&r))),
                    None if inflight.is_empty() => {
                        let r = consumer.next_async().await?;
                        Some((r.position(), r.next_position(), Bytes::copy_from_slice(&r)))
                    }
                    None => None,
                }
            };
            let Some((pos, after, payload)) = next else {
                if inflight.is_empty() {
                    // At the end, everything acknowledged and committed.
                    p.at = consumer.committed().get();
                    report.committed = consumer.committed();
                    return Ok(());
                }
                // Nothing to read now: take in the oldest acknowledgement.
                self.settle(&mut inflight, &mut consumer, p, report, max)
                    .await?;
                continue;
            };
            if tail.is_some_and(|t| pos <= t) {
                // In the stream already (and nothing of this session is in
                // flight before it: these come first).
                p.skipped += 1;
                report.skipped += 1;
                consumer.commit_to(after)?;
                p.at = after.get();
                continue;
            }
            let mid = self.message_id(pos);
            let len = payload.len();
            let msg = PublishMessage::build()
                .payload(payload)
                .message_id(&mid)
                .expected_last_sequence(expect);
            let ack = match self.js.send_publish(self.subject.clone(), msg).await {
                Ok(ack) => ack,
                Err(e) => {
                    drain(&mut inflight).await;
                    return Err(self.publish_failed(&e, pos, len, max));
                }
            };
            expect += 1;
            inflight.push_back((pos, after, len as u64, ack));
            if inflight.len() >= self.fwd.window {
                self.settle(&mut inflight, &mut consumer, p, report, max)
                    .await?;
            }
            if reported.elapsed() >= Duration::from_millis(200) {
                p.at = consumer.committed().get();
                progress(p);
                reported = Instant::now();
            }
        }
    }

    /// Awaits the oldest acknowledgement in flight and commits up to its
    /// record; on failure, lets the rest settle and says to start again.
    async fn settle(
        &self,
        inflight: &mut InFlight,
        consumer: &mut tidelog::Consumer,
        p: &mut Progress,
        report: &mut ForwardReport,
        max: usize,
    ) -> Result<(), Stop> {
        let Some((pos, after, len, ack)) = inflight.pop_front() else {
            return Ok(());
        };
        match ack.await {
            Ok(a) => {
                if a.duplicate {
                    p.skipped += 1;
                    report.skipped += 1;
                } else {
                    p.records += 1;
                    p.bytes += len;
                    report.records += 1;
                    report.bytes += len;
                }
                consumer.commit_to(after)?;
                Ok(())
            }
            Err(e) => {
                drain(inflight).await;
                Err(self.publish_failed(&e, pos, len as usize, max))
            }
        }
    }

    fn publish_failed(
        &self,
        e: &async_nats::jetstream::context::PublishError,
        at: Position,
        len: usize,
        max: usize,
    ) -> Stop {
        match e.kind() {
            PublishErrorKind::MaxPayloadExceeded => Stop::Fail(Error::Oversized {
                at: at.get(),
                len,
                max,
            }),
            PublishErrorKind::Other => {
                let code = std::error::Error::source(e)
                    .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
                    .map(|je| je.error_code());
                if code == Some(ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) {
                    Stop::Fail(Error::Oversized {
                        at: at.get(),
                        len,
                        max,
                    })
                } else {
                    Stop::Retry(format!("publishing to {}: {e}", self.subject))
                }
            }
            _ => Stop::Retry(format!("publishing to {}: {e}", self.subject)),
        }
    }
}

/// Lets every publish in flight settle, whatever its outcome, all at once
/// (each waits at most the acknowledgement timeout, 5 s): once they have,
/// none is likely to be stored behind the forwarder's back when it looks
/// up the stream's last message, and one that is (a publish that outlived
/// its timeout on the wire) is stored only right after its predecessor
/// (its expected sequence), and otherwise refused.
async fn drain(inflight: &mut InFlight) {
    futures_util::future::join_all(inflight.drain(..).map(|(_, _, _, ack)| ack.into_future()))
        .await;
}

/// JetStream errors that a later attempt may not meet: a cluster without a
/// leader for the moment, a stream created by another process meanwhile.
pub(crate) fn transient(code: ErrorCode) -> bool {
    code == ErrorCode::CLUSTER_NOT_AVAILABLE
        || code == ErrorCode::CLUSTER_NOT_LEADER
        || code == ErrorCode::CLUSTER_NOT_ACTIVE
        || code == ErrorCode::CLUSTER_INCOMPLETE
        || code == ErrorCode::STREAM_NAME_EXIST
}
