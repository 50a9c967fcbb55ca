//! The kernel's boot id, which tells a process crash from a restart.
//!
//! After a process crash the page cache survives: a frame left empty below
//! the tail is a reservation whose writer died, and the records after it
//! were acknowledged and are intact. After a restart (a power cut, a kernel
//! crash) any page not yet written back may be lost, in any pattern: the
//! same empty frame may be a lost record, and keeping what follows it would
//! leave a gap. Each segment keeps the boot id of the boot it was last
//! opened for writing in; recovery compares it with the current one, read
//! afresh from [`BOOT_ID_PATH`] at every open (so that a test can run
//! recovery in a private mount namespace with a file bound over it).

use std::fmt;

/// Where Linux publishes the random id it draws at every boot.
pub(crate) const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// A boot id as stored in a segment header: the 16 bytes of the UUID, as
/// two little-endian words. All zeros means "unknown".
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct BootId(pub(crate) [u64; 2]);

impl BootId {
    /// The id of no boot: segments stamped with it (never by a writer: a
    /// writable open fails if the boot id cannot be read) get the rules
    /// for a restart.
    pub(crate) const UNKNOWN: BootId = BootId([0, 0]);

    /// The current boot's id, read now.
    ///
    /// # Errors
    /// The file cannot be read, or does not hold a boot id.
    pub(crate) fn current() -> std::io::Result<BootId> {
        let text = std::fs::read_to_string(BOOT_ID_PATH)?;
        Self::parse(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a boot id (32 hex digits)",
            )
        })
    }

    /// Parses the kernel's text form: 32 hex digits, dashes anywhere,
    /// surrounding white space ignored.
    pub(crate) fn parse(text: &str) -> Option<BootId> {
        let mut bytes = [0u8; 16];
        let mut n = 0;
        for c in text.trim().chars() {
            if c == '-' {
                continue;
            }
            let d = c.to_digit(16)? as u8;
            if n >= 32 {
                return None;
            }
            bytes[n / 2] |= if n % 2 == 0 { d << 4 } else { d };
            n += 1;
        }
        if n != 32 {
            return None;
        }
        let lo = u64::from_le_bytes(bytes[..8].try_into().ok()?);
        let hi = u64::from_le_bytes(bytes[8..].try_into().ok()?);
        let id = BootId([lo, hi]);
        (id != Self::UNKNOWN).then_some(id)
    }

    /// Whether this is a real boot's id.
    pub(crate) fn is_known(self) -> bool {
        self != Self::UNKNOWN
    }
}

impl fmt::Debug for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b: Vec<u8> = self.0.iter().flat_map(|w| w.to_le_bytes()).collect();
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_format() {
        let id = BootId::parse("0f6c1f5e-7d2b-4b4e-9a51-3c1d2e4f5a6b\n").unwrap();
        assert_eq!(format!("{id:?}"), "0f6c1f5e-7d2b-4b4e-9a51-3c1d2e4f5a6b");
        assert!(id.is_known());
    }

    #[test]
    fn refuses_what_is_not_a_boot_id() {
        for bad in [
            "",
            "0f6c1f5e",
            "0f6c1f5e-7d2b-4b4e-9a51-3c1d2e4f5a6b00",
            "zf6c1f5e-7d2b-4b4e-9a51-3c1d2e4f5a6b",
            "00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(BootId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn this_machine_has_one() {
        // Linux always has the file; the id is stable within a boot.
        let id = BootId::current().unwrap();
        assert!(id.is_known());
        assert_eq!(id, BootId::current().unwrap());
    }
}
