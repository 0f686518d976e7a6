//! Addresses and byte ranges as the user writes them, and which accesses
//! (and which row groups) can touch them.

use anyhow::{bail, Context, Result};

/// The largest access QEMU reports (a 16-byte vector load or store): an
/// access at `a` touches at most `a..a + 16`.
pub const MAX_ACCESS: u64 = 16;

/// An address: `0x` and hex digits, or decimal digits (`_` allowed between
/// digits in either).
pub fn parse_addr(text: &str) -> Result<u64> {
    let t = text.trim().replace('_', "");
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse(),
    };
    parsed.ok().with_context(|| {
        format!("address `{text}`: expected hex (0x4a62d0) or decimal digits, at most 64 bits")
    })
}

/// A byte range `start..end` (end excluded, never empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    /// `ADDR` (one byte), `ADDR+LEN` or `ADDR..END` (END excluded).
    pub fn parse(text: &str) -> Result<Span> {
        let (start, end) = if let Some((a, b)) = text.split_once("..") {
            (parse_addr(a)?, parse_addr(b)?)
        } else if let Some((a, len)) = text.split_once('+') {
            let start = parse_addr(a)?;
            let len = parse_addr(len).with_context(|| format!("length in `{text}`"))?;
            let end = start
                .checked_add(len)
                .with_context(|| format!("range `{text}` goes past the end of 64-bit memory"))?;
            (start, end)
        } else {
            let a = parse_addr(text)?;
            (a, a.saturating_add(1))
        };
        if end <= start {
            bail!("range `{text}` is empty: its end must be above its start");
        }
        Ok(Span { start, end })
    }

    /// Whether an access of `size` bytes at `addr` touches the range.
    pub fn touched_by(&self, addr: u64, size: u64) -> bool {
        addr < self.end && addr.saturating_add(size) > self.start
    }

    /// Whether a row group whose accesses start between `lo` and `hi` (its
    /// `addr` statistics) can touch the range.
    pub fn reachable_from(&self, (lo, hi): (u64, u64)) -> bool {
        lo < self.end && hi.saturating_add(MAX_ACCESS) > self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hex_decimal_and_ranges() {
        assert_eq!(parse_addr("0x4a62d0").unwrap(), 0x4a62d0);
        assert_eq!(parse_addr("4874960").unwrap(), 4874960);
        assert_eq!(
            Span::parse("0x10").unwrap(),
            Span {
                start: 0x10,
                end: 0x11
            }
        );
        assert_eq!(Span::parse("0x10+8").unwrap().end, 0x18);
        assert_eq!(Span::parse("0x10..0x20").unwrap().end, 0x20);
    }

    #[test]
    fn bad_addresses_say_which() {
        for bad in ["", "0x", "zz", "0xg1", "-5", "18446744073709551616"] {
            let e = format!("{:#}", parse_addr(bad).unwrap_err());
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
        assert!(Span::parse("0x20..0x10").is_err());
        assert!(Span::parse("0x10+0").is_err());
        assert!(Span::parse("0xffffffffffffffff+2").is_err());
    }

    #[test]
    fn touches_respect_access_size() {
        let s = Span::parse("0x100+4").unwrap();
        assert!(s.touched_by(0xf8, 9)); // its last byte is 0x100
        assert!(!s.touched_by(0xf8, 8));
        assert!(s.touched_by(0x103, 1));
        assert!(!s.touched_by(0x104, 16));
        assert!(s.reachable_from((0x0, 0xf1)));
        assert!(!s.reachable_from((0x0, 0xf0)));
        assert!(!s.reachable_from((0x104, 0x200)));
    }
}
