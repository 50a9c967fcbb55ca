//! [`RecordStream`]: a `futures::Stream` of owned records over a reader or
//! a consumer (the `async` feature).

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::consumer::Consumer;
use crate::error::Result;
use crate::read::{OwnedRecord, Reader};

/// What a [`RecordStream`] reads from: a [`Reader`] or a [`Consumer`].
/// Sealed: implemented by those two only.
pub trait Source: sealed::Sealed + Unpin {
    /// Polls for the next record, copied out.
    #[doc(hidden)]
    fn poll_owned(&mut self, cx: &mut Context<'_>) -> Poll<Result<OwnedRecord>>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::read::Reader {}
    impl Sealed for crate::consumer::Consumer {}
}

impl Source for Reader {
    fn poll_owned(&mut self, cx: &mut Context<'_>) -> Poll<Result<OwnedRecord>> {
        self.poll_next_record(cx).map(|r| r.map(OwnedRecord::from))
    }
}

impl Source for Consumer {
    fn poll_owned(&mut self, cx: &mut Context<'_>) -> Poll<Result<OwnedRecord>> {
        self.poll_next_record(cx).map(|r| r.map(OwnedRecord::from))
    }
}

/// A [`Stream`] of the records of a [`Reader`] or a [`Consumer`], each
/// copied out of the log (the `async` feature): for code built on stream
/// combinators. [`Reader::next_async`] and [`Consumer::next_async`] borrow
/// records instead, with no copy.
///
/// The stream never ends: a log has no last record. An error is yielded
/// once per poll and leaves the source where it was; a damaged record is
/// skipped through [`get_mut`](Self::get_mut) and
/// [`Reader::skip_damaged`]. Dropping a `next()` future in flight loses no
/// record. A consumer's progress is committed through `get_mut` too.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// use futures_util::StreamExt;
/// use tidelog::{Log, StartAt};
///
/// let log = Log::open(tmp.path())?;
/// let mut appender = log.appender()?;
/// for n in 0..3u8 {
///     appender.append(&[n])?;
/// }
/// let mut stream = log.consumer_from("audit", StartAt::Beginning)?.into_stream();
/// futures_executor::block_on(async {
///     let first_two: Vec<_> = (&mut stream).take(2).collect().await;
///     assert_eq!(*first_two[1].as_ref().unwrap().payload(), [1]);
///     stream.get_mut().commit()
/// })?;
/// // A consumer of that name resumes at the third record.
/// drop(stream);
/// assert_eq!(&*log.consumer("audit")?.try_next()?.unwrap(), &[2]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RecordStream<S: Source> {
    source: S,
}

impl<S: Source> RecordStream<S> {
    pub(crate) fn new(source: S) -> Self {
        Self { source }
    }

    /// The reader or consumer.
    pub fn get_ref(&self) -> &S {
        &self.source
    }

    /// The reader or consumer, to commit, skip damage or look at stalls.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// The reader or consumer back.
    pub fn into_inner(self) -> S {
        self.source
    }
}

impl<S: Source> Stream for RecordStream<S> {
    type Item = Result<OwnedRecord>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().source.poll_owned(cx).map(Some)
    }
}

impl Reader {
    /// A [`Stream`] of this reader's records, copied out (the `async`
    /// feature; see [`RecordStream`]).
    pub fn into_stream(self) -> RecordStream<Reader> {
        RecordStream::new(self)
    }
}

impl Consumer {
    /// A [`Stream`] of this consumer's records, copied out (the `async`
    /// feature; see [`RecordStream`]). Commit through
    /// [`RecordStream::get_mut`].
    pub fn into_stream(self) -> RecordStream<Consumer> {
        RecordStream::new(self)
    }
}
