//! One count cell of a tally sheet: the strict integer parsing every reader shares (files, the
//! generic column reader, layout inference), with the precise reason a cell is not a count.

use tally_model::{StoredCount, MAX_COUNT};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountError {
    Negative,
    NotInteger,
    TooLarge,
}

/// An empty cell is `Ok(None)`. Accepts `123` and `123.0` (spreadsheet exports); rejects
/// negatives, fractions, exponents and anything else.
#[inline]
pub fn parse_count(b: &[u8]) -> Result<Option<StoredCount>, CountError> {
    match plain_count(b) {
        Some(v) => Ok(Some(v)),
        None => parse_count_slow(b),
    }
}

/// The count in a cell of 1 to 9 plain digits (no overflow possible, below MAX_COUNT): nearly
/// every cell. `None` for anything else, which [`parse_count`] then reads carefully.
#[inline(always)]
pub fn plain_count(b: &[u8]) -> Option<StoredCount> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    let mut v: StoredCount = 0;
    let mut plain = true;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        plain &= d <= 9;
        v = v * 10 + StoredCount::from(d & 15);
    }
    plain.then_some(v)
}

/// Whitespace, `12.0`, signs, overflow: the careful path with the precise error (out of line:
/// the fast path is inlined into the parser's loop over a row's cells).
#[inline(never)]
fn parse_count_slow(b: &[u8]) -> Result<Option<StoredCount>, CountError> {
    let b = trim(b);
    if b.is_empty() {
        return Ok(None);
    }
    let mut v: u64 = 0;
    for (i, &c) in b.iter().enumerate() {
        let d = c.wrapping_sub(b'0');
        if d <= 9 {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d)))
                .ok_or(CountError::TooLarge)?;
        } else if c == b'.' && i > 0 && b[i + 1..].iter().all(|&z| z == b'0') {
            break; // "12.0" from spreadsheet exports
        } else if c == b'-' && i == 0 && b.len() > 1 && b[1..].iter().all(u8::is_ascii_digit) {
            return Err(CountError::Negative);
        } else {
            return Err(CountError::NotInteger);
        }
    }
    if v > MAX_COUNT {
        return Err(CountError::TooLarge);
    }
    Ok(Some(v as StoredCount))
}

pub(crate) fn trim(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if first.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if last.is_ascii_whitespace() {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// Why a cell is not a count, for E101 messages.
pub(crate) fn count_error_text(e: CountError) -> &'static str {
    match e {
        CountError::Negative => "negative",
        CountError::NotInteger => "not an integer",
        CountError::TooLarge => "too large to be a count",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_strictly() {
        assert_eq!(parse_count(b"0"), Ok(Some(0)));
        assert_eq!(parse_count(b"999999999"), Ok(Some(999_999_999)));
        // Either side of the largest count (2^32 - 2; 2^32 - 1 marks an absent one).
        assert_eq!(parse_count(b"4294967294"), Ok(Some(4_294_967_294)));
        assert_eq!(parse_count(b"4294967295"), Err(CountError::TooLarge));
        assert_eq!(parse_count(b"999999999999"), Err(CountError::TooLarge));
        assert_eq!(parse_count(b"12a"), Err(CountError::NotInteger));
        assert_eq!(parse_count(b"1:2"), Err(CountError::NotInteger));
        assert_eq!(parse_count(b" 12 "), Ok(Some(12)));
        assert_eq!(parse_count(b"12.0"), Ok(Some(12)));
        assert_eq!(parse_count(b""), Ok(None));
        assert_eq!(parse_count(b"-3"), Err(CountError::Negative));
        assert_eq!(parse_count(b"1.5"), Err(CountError::NotInteger));
        assert_eq!(parse_count(b"1e3"), Err(CountError::NotInteger));
        assert_eq!(parse_count(b"abc"), Err(CountError::NotInteger));
        assert_eq!(parse_count(b"-"), Err(CountError::NotInteger));
        assert_eq!(
            parse_count(b"99999999999999999999999"),
            Err(CountError::TooLarge)
        );
        assert_eq!(parse_count(b"2000000000000"), Err(CountError::TooLarge));
    }
}
