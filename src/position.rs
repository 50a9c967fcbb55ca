//! Log positions.

use std::fmt;

/// Where a record sits in a log: a logical byte offset across all segments.
///
/// Positions are the records' ids. They are stable (a record never moves),
/// strictly increasing in append order, unique within a log, and can be given
/// back to [`Log::reader_at`](crate::Log::reader_at) to resume reading there.
/// They are not dense: headers, alignment and segment ends leave gaps.
///
/// ```
/// use tidelog::Position;
/// let p = Position::from(4096);
/// assert_eq!(u64::from(p), 4096);
/// assert_eq!(p.to_string(), "4096");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(u64);

impl Position {
    /// The position as a number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl From<u64> for Position {
    fn from(v: u64) -> Self {
        Self(v)
    }
}

impl From<Position> for u64 {
    fn from(p: Position) -> u64 {
        p.0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Position({})", self.0)
    }
}
