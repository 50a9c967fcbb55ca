//! Durability: making what was appended survive a power cut, and recording
//! that it does (the `flushed` watermark), as `docs/FORMAT.md`
//! ("Durability") specifies. Flush policies and group commit belong here.

use std::sync::Arc;

use crate::format::{FRAME_ALIGN, HEADER_LEN};
use crate::read::Reader;
use crate::store::Store;
use crate::Result;

/// [`Log::flush`](crate::Log::flush): for each segment with records past
/// its durable watermark, walks them up to the tail as it is now, waiting
/// for every frame there to be published, then syncs the segment, raises
/// its watermark and syncs the header page; then the directory, if it
/// holds a segment this handle has not synced.
pub(crate) fn flush(store: &Arc<Store>) -> Result<()> {
    if store.is_writable() {
        // Records appended to a segment someone removed are not in the
        // log: never report them durable.
        store.active().check_linked()?;
    }
    let bases = store.dir.segments()?;
    for &base in &bases {
        let Some(seg) = store.segment(base)? else {
            continue;
        };
        let sh = seg.shared();
        if !store.is_writable() {
            seg.flush_range(0, sh.reserved_end())?;
            continue;
        }
        seg.check_linked()?;
        let to = sh.reserved_end();
        let from = sh.flushed();
        if from >= to {
            continue;
        }
        let start = if from >= HEADER_LEN && from.is_multiple_of(FRAME_ALIGN) {
            from
        } else {
            HEADER_LEN
        };
        // Every frame below the new watermark must be complete before it
        // is synced, or a restart could find a hole there and cut the
        // records after it.
        let mut walker = Reader::new(Arc::clone(store), Arc::clone(&seg), start);
        loop {
            match walker.walk_to(base + to, None) {
                Ok(_) => break,
                Err(e) if e.is_corruption() && e.position().is_some() => {
                    let at = walker.position();
                    if walker.skip_damaged()? == at {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        seg.flush_range(0, to)?;
        sh.raise_flushed(to);
        seg.flush_header()?;
    }
    store.sync_dir_for(&bases)
}
