//! Spans and events for the `tracing` feature; without it the macros
//! expand to nothing. Only rare events are traced (recovery, rollover,
//! holes repaired, retention): never the append or read path.

/// Enters an info span until the end of the enclosing block.
macro_rules! trace_span {
    ($name:literal $(, $($field:tt)*)?) => {
        #[cfg(feature = "tracing")]
        let _span = tracing::info_span!($name $(, $($field)*)?).entered();
    };
}

/// Emits an info event.
macro_rules! trace_event {
    ($($arg:tt)*) => {
        #[cfg(feature = "tracing")]
        {
            tracing::info!($($arg)*);
        }
    };
}

pub(crate) use {trace_event, trace_span};
