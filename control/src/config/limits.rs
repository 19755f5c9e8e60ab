//! Bounds on a configuration's text, checked before the YAML parser sees it:
//! its size and how deep its flow collections (`[...]`, `{...}`) nest.
//!
//! The parser's time grows with the square of the flow nesting depth (10,000
//! nested `[` take seconds, a 16 MiB file of them hours), and no
//! configuration needs more than a few levels, so text nested deeper than
//! [`MAX_FLOW_DEPTH`] is refused by a linear scan first. Block nesting
//! (indentation) costs the parser linear time and is bounded by the size;
//! serde's recursion limit (128) then refuses deep values of either kind.
//!
//! ```
//! use kowabunga_control::config::limits::{check_text, MAX_FLOW_DEPTH};
//!
//! assert!(check_text("a: [[1], {b: [2]}]\n").is_ok());
//! let deep = format!("a: {}{}\n", "[".repeat(MAX_FLOW_DEPTH + 1), "]".repeat(MAX_FLOW_DEPTH + 1));
//! assert_eq!(check_text(&deep).unwrap_err().to_string(), "line 1: [ and { nested deeper than 64 levels");
//! // Brackets in quotes and comments do not count.
//! assert!(check_text(&format!("a: \"{}\" # {}\n", "[".repeat(100), "{".repeat(100))).is_ok());
//! ```

use thiserror::Error;

/// Largest configuration accepted, in bytes (16 MiB): a region's biggest
/// legitimate file (10,000 firewall rules, thousands of DNS records) is a
/// few MiB. Longer text is refused before parsing, and
/// [`load`](super::load) reads no more than this (plus one byte) of a file,
/// so an endless file cannot exhaust memory.
pub const MAX_CONFIG_BYTES: usize = 16 << 20;

/// Deepest nesting of flow collections (`[` and `{`) accepted.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Text the parser is not given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitError {
    /// Longer than [`MAX_CONFIG_BYTES`].
    #[error("{size} bytes: a configuration is at most {MAX_CONFIG_BYTES} bytes (16 MiB)")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Flow collections nested deeper than [`MAX_FLOW_DEPTH`].
    #[error("line {line}: [ and {{ nested deeper than {MAX_FLOW_DEPTH} levels")]
    TooDeep {
        /// 1-based line of the opening bracket past the limit.
        line: usize,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Single,
    Double,
    Comment,
}

/// Checks `text` against [`MAX_CONFIG_BYTES`] and [`MAX_FLOW_DEPTH`] in one
/// linear pass. Brackets inside quoted scalars and comments are skipped;
/// anywhere else (a plain scalar such as `a[b` too) a bracket counts, so the
/// estimate errs on the deep side.
///
/// # Errors
/// The first bound exceeded.
pub fn check_text(text: &str) -> Result<(), LimitError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(LimitError::TooLarge { size: text.len() });
    }
    let mut mode = Mode::Plain;
    let mut depth = 0usize;
    let mut line = 1usize;
    // The byte before the current one (`\n` at the start).
    let mut prev = b'\n';
    let mut bytes = text.bytes().peekable();
    while let Some(b) = bytes.next() {
        if b == b'\n' {
            line += 1;
        }
        match mode {
            Mode::Comment if b == b'\n' => mode = Mode::Plain,
            Mode::Comment => {}
            Mode::Single if b == b'\'' => {
                if bytes.peek() == Some(&b'\'') {
                    bytes.next(); // '' is a quote inside the scalar
                } else {
                    mode = Mode::Plain;
                }
            }
            Mode::Double if b == b'\\' => {
                if bytes.next() == Some(b'\n') {
                    line += 1;
                }
            }
            Mode::Double if b == b'"' => mode = Mode::Plain,
            Mode::Single | Mode::Double => {}
            Mode::Plain => {
                let token_start = matches!(
                    prev,
                    b' ' | b'\t' | b'\n' | b'\r' | b'[' | b'{' | b',' | b':' | b'?' | b'-'
                );
                match b {
                    b'#' if matches!(prev, b' ' | b'\t' | b'\n' | b'\r') => mode = Mode::Comment,
                    b'\'' if token_start => mode = Mode::Single,
                    b'"' if token_start => mode = Mode::Double,
                    b'[' | b'{' => {
                        depth += 1;
                        if depth > MAX_FLOW_DEPTH {
                            return Err(LimitError::TooDeep { line });
                        }
                    }
                    b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
        }
        prev = b;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_flow_depth_outside_quotes_and_comments() {
        let nest = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
        assert!(check_text(&format!("a: {}\n", nest(MAX_FLOW_DEPTH))).is_ok());
        assert_eq!(
            check_text(&format!("a: 1\nb: {}\n", nest(MAX_FLOW_DEPTH + 1))),
            Err(LimitError::TooDeep { line: 2 })
        );
        // Siblings do not add up.
        let wide = vec![nest(10); 1000].join(", ");
        assert!(check_text(&format!("a: [{wide}]\n")).is_ok());
        // Quoted brackets, escaped quotes, '' and comments.
        let many = "[".repeat(200);
        for ok in [
            format!("a: '{many}'\n"),
            format!("a: 'it''s {many}'\n"),
            format!("a: \"\\\" {many}\"\n"),
            format!("a: 1 # {many}\n"),
            format!("# {many}\n"),
            format!("a: [\"{many}\", '{many}']\n"),
        ] {
            assert_eq!(check_text(&ok), Ok(()), "{ok}");
        }
        // A quote inside a plain scalar does not hide what follows.
        let text = format!("a: don't\nb: {}\n", nest(100));
        assert_eq!(check_text(&text), Err(LimitError::TooDeep { line: 2 }));
        // Closing brackets in quotes do not lower the count.
        let mut sneaky = String::from("a: ");
        for _ in 0..100 {
            sneaky.push_str("[ \"]]]\", ");
        }
        assert!(matches!(
            check_text(&sneaky),
            Err(LimitError::TooDeep { .. })
        ));
        assert_eq!(
            check_text(&"#".repeat(MAX_CONFIG_BYTES + 1)),
            Err(LimitError::TooLarge {
                size: MAX_CONFIG_BYTES + 1
            })
        );
    }
}
