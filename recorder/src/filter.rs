//! Which blocks are recorded (options `ranges=` and `syms=`), decided once
//! per block at translation: a block left out gets no callback and no
//! counter, so the code outside the filter runs as fast as without the
//! recorder.

/// Address ranges and symbol patterns; empty means every block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Half-open `[start, end)` ranges of block start addresses.
    pub ranges: Vec<(u64, u64)>,
    /// Glob patterns (`*`, `?`) matched against the symbol that contains a
    /// block's first instruction.
    pub syms: Vec<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.syms.is_empty()
    }

    /// Whether the block at `pc` is recorded; `symbol` is asked only when a
    /// pattern must decide.
    pub fn includes(&self, pc: u64, symbol: impl FnOnce() -> Option<String>) -> bool {
        if self.is_empty() || self.ranges.iter().any(|&(lo, hi)| (lo..hi).contains(&pc)) {
            return true;
        }
        if self.syms.is_empty() {
            return false;
        }
        symbol().is_some_and(|s| self.syms.iter().any(|p| glob(p.as_bytes(), s.as_bytes())))
    }

    /// `ranges=START-END+START-END...` (hex with `0x`, or decimal; END excluded).
    pub fn parse_ranges(value: &str) -> Result<Vec<(u64, u64)>, String> {
        value
            .split('+')
            .map(|r| {
                let bad =
                    || format!("option `ranges={value}`: `{r}` is not START-END with START < END");
                let (lo, hi) = r.split_once('-').ok_or_else(bad)?;
                let (lo, hi) = (number(lo).ok_or_else(bad)?, number(hi).ok_or_else(bad)?);
                if lo < hi {
                    Ok((lo, hi))
                } else {
                    Err(bad())
                }
            })
            .collect()
    }

    /// `syms=PATTERN+PATTERN...`.
    pub fn parse_syms(value: &str) -> Result<Vec<String>, String> {
        let syms: Vec<String> = value.split('+').map(str::to_string).collect();
        if syms.iter().any(String::is_empty) {
            return Err(format!("option `syms={value}`: an empty pattern"));
        }
        Ok(syms)
    }
}

/// `0x...` (hex) or decimal.
pub(crate) fn number(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `*` matches any run of bytes, `?` any one byte.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative, with one backtracking point: linear in practice.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("collatz", "collatz", true),
            ("coll*", "collatz", true),
            ("*atz", "collatz", true),
            ("c?llatz", "collatz", true),
            ("*l*z", "collatz", true),
            ("sieve", "collatz", false),
            ("coll", "collatz", false),
            ("*", "", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
        ] {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn ranges_and_symbols_decide_together() {
        let f = Filter {
            ranges: Filter::parse_ranges("0x1000-0x2000+16384-20000").unwrap(),
            syms: Filter::parse_syms("main+str*").unwrap(),
        };
        assert!(f.includes(0x1000, || None));
        assert!(!f.includes(0x2000, || None));
        assert!(f.includes(16384, || None));
        assert!(f.includes(0x9000, || Some("strlen".into())));
        assert!(!f.includes(0x9000, || Some("memcpy".into())));
        assert!(!f.includes(0x9000, || None));
        assert!(Filter::default().includes(0, || None));
    }

    #[test]
    fn bad_values_name_the_option() {
        for bad in ["0x2000-0x1000", "12", "0x10-zz", ""] {
            let err = Filter::parse_ranges(bad).unwrap_err();
            assert!(err.contains("ranges="), "{bad}: {err}");
        }
        assert!(Filter::parse_syms("a++b").unwrap_err().contains("syms="));
    }
}
