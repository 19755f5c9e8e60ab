//! Upstream port-list syntax: `443`, `22,80,443`, `80,3000-3005`.
//!
//! A list is comma-separated items; an item is a port or an inclusive range
//! `lo-hi`. Ports are 1..=65535. Spaces around items and around the dash are
//! tolerated (`"80, 443"`), empty items are not (`"80,,443"`, `"80,"`).
//!
//! ```
//! use kowabunga_control::config::ports::parse_port_list;
//!
//! assert_eq!(parse_port_list("80,3000-3005").unwrap(), vec![(80, 80), (3000, 3005)]);
//! assert!(parse_port_list("80,x").is_err());
//! ```

use thiserror::Error;

/// Why a port list was rejected; each variant carries the offending text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PortError {
    /// The whole list is empty or blank.
    #[error("empty port list")]
    Empty,
    /// An item between commas is empty (`"80,,443"`, `"80,"`).
    #[error("empty item in port list")]
    EmptyItem,
    /// An item is not a number (`"x"`, `"80-"`, `"+80"`).
    #[error("{0:?} is not a port")]
    NotANumber(String),
    /// Port 0 is not a valid destination port.
    #[error("port 0 is not allowed in {0:?}")]
    Zero(String),
    /// A number above 65535.
    #[error("{0:?} is greater than 65535")]
    TooLarge(String),
    /// A range whose low end is above its high end (`"90-80"`).
    #[error("range {0:?} is reversed")]
    Reversed(String),
}

/// Parses a port list into inclusive `(lo, hi)` ranges, in the order written.
///
/// Duplicates and overlaps are kept as written: each item becomes one range.
///
/// # Errors
/// A [`PortError`] naming the offending item.
pub fn parse_port_list(text: &str) -> Result<Vec<(u16, u16)>, PortError> {
    if text.trim().is_empty() {
        return Err(PortError::Empty);
    }
    text.split(',').map(parse_item).collect()
}

/// Parses exactly one port or range (`"1024-65535"`, `"443"`).
///
/// # Errors
/// A [`PortError`] naming the offending item; a list with a comma is
/// reported as [`PortError::NotANumber`].
pub fn parse_port_range(text: &str) -> Result<(u16, u16), PortError> {
    if text.trim().is_empty() {
        return Err(PortError::Empty);
    }
    if text.contains(',') {
        return Err(PortError::NotANumber(text.trim().to_owned()));
    }
    parse_item(text)
}

fn parse_item(item: &str) -> Result<(u16, u16), PortError> {
    let item = item.trim();
    if item.is_empty() {
        return Err(PortError::EmptyItem);
    }
    match item.split_once('-') {
        None => {
            let port = parse_port(item, item)?;
            Ok((port, port))
        }
        Some((lo, hi)) => {
            let lo = parse_port(lo.trim(), item)?;
            let hi = parse_port(hi.trim(), item)?;
            if lo > hi {
                return Err(PortError::Reversed(item.to_owned()));
            }
            Ok((lo, hi))
        }
    }
}

/// `part` is one number; `item` is the whole item for error messages.
fn parse_port(part: &str, item: &str) -> Result<u16, PortError> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortError::NotANumber(item.to_owned()));
    }
    let digits = part.trim_start_matches('0');
    if digits.is_empty() {
        return Err(PortError::Zero(item.to_owned()));
    }
    // All digits: parsing fails only on overflow, which is "too large" too.
    let value: u32 = if digits.len() > 5 {
        u32::MAX
    } else {
        digits.parse().unwrap_or(u32::MAX)
    };
    u16::try_from(value).map_err(|_| PortError::TooLarge(part.to_owned()))
}

/// Total number of ports covered by `ranges` (overlaps counted twice).
pub fn port_count(ranges: &[(u16, u16)]) -> u32 {
    ranges
        .iter()
        .map(|&(lo, hi)| u32::from(hi) - u32::from(lo) + 1)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_port() {
        assert_eq!(parse_port_list("443"), Ok(vec![(443, 443)]));
    }

    #[test]
    fn list_of_ports() {
        assert_eq!(
            parse_port_list("22,80,443"),
            Ok(vec![(22, 22), (80, 80), (443, 443)])
        );
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(
            parse_port_list("80,3000-3005"),
            Ok(vec![(80, 80), (3000, 3005)])
        );
        assert_eq!(parse_port_list("1-65535"), Ok(vec![(1, 65535)]));
        assert_eq!(parse_port_list("7-7"), Ok(vec![(7, 7)]));
    }

    #[test]
    fn spaces_are_tolerated() {
        assert_eq!(
            parse_port_list(" 80 , 3000 - 3005 "),
            Ok(vec![(80, 80), (3000, 3005)])
        );
    }

    #[test]
    fn leading_zeros() {
        assert_eq!(parse_port_list("0080"), Ok(vec![(80, 80)]));
    }

    #[test]
    fn rejects_empty() {
        assert_eq!(parse_port_list(""), Err(PortError::Empty));
        assert_eq!(parse_port_list("  "), Err(PortError::Empty));
    }

    #[test]
    fn rejects_empty_items() {
        assert_eq!(parse_port_list("80,,443"), Err(PortError::EmptyItem));
        assert_eq!(parse_port_list("80,"), Err(PortError::EmptyItem));
        assert_eq!(parse_port_list(",80"), Err(PortError::EmptyItem));
    }

    #[test]
    fn rejects_zero() {
        assert_eq!(parse_port_list("0"), Err(PortError::Zero("0".into())));
        assert_eq!(parse_port_list("000"), Err(PortError::Zero("000".into())));
        assert_eq!(parse_port_list("0-80"), Err(PortError::Zero("0-80".into())));
    }

    #[test]
    fn rejects_too_large() {
        assert_eq!(
            parse_port_list("65536"),
            Err(PortError::TooLarge("65536".into()))
        );
        assert_eq!(
            parse_port_list("80-70000"),
            Err(PortError::TooLarge("70000".into()))
        );
        assert_eq!(
            parse_port_list("99999999999999999999999"),
            Err(PortError::TooLarge("99999999999999999999999".into()))
        );
    }

    #[test]
    fn rejects_reversed() {
        assert_eq!(
            parse_port_list("90-80"),
            Err(PortError::Reversed("90-80".into()))
        );
    }

    #[test]
    fn rejects_junk() {
        for junk in [
            "x",
            "80,x",
            "80-",
            "-80",
            "+80",
            "-",
            "80-90-100",
            "8 0",
            "ssh",
            "1e3",
        ] {
            let err = parse_port_list(junk).expect_err(junk);
            assert!(matches!(err, PortError::NotANumber(_)), "{junk}: {err:?}");
        }
        assert_eq!(
            parse_port_list("80,x"),
            Err(PortError::NotANumber("x".into()))
        );
        assert_eq!(
            parse_port_list("80-90-100"),
            Err(PortError::NotANumber("80-90-100".into()))
        );
    }

    #[test]
    fn error_messages_carry_the_text() {
        assert_eq!(
            parse_port_list("22,ssh").map_err(|e| e.to_string()),
            Err("\"ssh\" is not a port".to_owned())
        );
        assert_eq!(
            parse_port_list("90-80").map_err(|e| e.to_string()),
            Err("range \"90-80\" is reversed".to_owned())
        );
    }

    #[test]
    fn single_range() {
        assert_eq!(parse_port_range("1024-65535"), Ok((1024, 65535)));
        assert_eq!(parse_port_range("5000"), Ok((5000, 5000)));
        assert!(matches!(
            parse_port_range("1,2"),
            Err(PortError::NotANumber(_))
        ));
        assert_eq!(parse_port_range(""), Err(PortError::Empty));
    }

    #[test]
    fn counts_ports() {
        assert_eq!(port_count(&[(80, 80), (3000, 3005)]), 7);
        assert_eq!(port_count(&[(1, 65535)]), 65535);
    }
}
