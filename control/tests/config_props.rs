//! Property tests of the configuration parser and validator (issue 12 item
//! 6): whatever the input, `config::parse_str` returns `Ok` or an `Err`
//! whose line is one line, never a panic.

mod common;

use common::BASE;
use kowabunga_control::config::{self, MAX_ERROR_LINE};
use proptest::prelude::*;

/// Parses `text`; an error must be one bounded line.
fn parse_total(text: &str) -> bool {
    match config::parse_str(text) {
        Ok(_) => true,
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n'), "{line}");
            assert!(line.len() <= MAX_ERROR_LINE + 100, "{} bytes", line.len());
            false
        }
    }
}

/// Values of every YAML type, including ones no field takes.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("4294967296".to_owned()),
        Just("1.5".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("~".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[[[]]]".to_owned()),
        Just("\"\"".to_owned()),
        Just("&a x".to_owned()),
        Just("*a".to_owned()),
        Just("!!binary aGVsbG8=".to_owned()),
        Just("10.0.0.0/8".to_owned()),
        Just("203.0.113.10".to_owned()),
        Just("\"1-65535\"".to_owned()),
        "[a-z0-9./:-]{0,20}",
        "\"[ -~]{0,30}\"",
    ]
}

/// One edit of a line of `BASE`.
#[derive(Debug, Clone)]
enum Mutation {
    /// Drop the line.
    Delete(usize),
    /// Keep the key, put another value.
    Retype(usize, String),
    /// Rename the key.
    Rekey(usize, String),
    /// Repeat the line.
    Duplicate(usize),
    /// Shift the line's indentation.
    Indent(usize, usize),
    /// Swap two lines.
    Swap(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let n = BASE.lines().count();
    prop_oneof![
        (0..n).prop_map(Mutation::Delete),
        (0..n, value()).prop_map(|(i, v)| Mutation::Retype(i, v)),
        (0..n, "[a-z_]{1,12}").prop_map(|(i, k)| Mutation::Rekey(i, k)),
        (0..n).prop_map(Mutation::Duplicate),
        (0..n, 0usize..8).prop_map(|(i, d)| Mutation::Indent(i, d)),
        (0..n, 0..n).prop_map(|(i, j)| Mutation::Swap(i, j)),
    ]
}

fn apply(mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = BASE.lines().map(str::to_owned).collect();
    for m in mutations {
        let len = lines.len();
        if len == 0 {
            break;
        }
        match m {
            Mutation::Delete(i) => {
                lines.remove(i % len);
            }
            Mutation::Retype(i, v) => {
                let line = &mut lines[i % len];
                if let Some(colon) = line.find(": ") {
                    line.truncate(colon + 2);
                    line.push_str(v);
                }
            }
            Mutation::Rekey(i, k) => {
                let line = &mut lines[i % len];
                let indent = line.len() - line.trim_start_matches([' ', '-']).len();
                if let Some(colon) = line.find(':') {
                    if colon >= indent {
                        line.replace_range(indent..colon, k);
                    }
                }
            }
            Mutation::Duplicate(i) => {
                let line = lines[i % len].clone();
                lines.insert(i % len, line);
            }
            Mutation::Indent(i, d) => {
                let line = &mut lines[i % len];
                let trimmed = line.trim_start().to_owned();
                *line = format!("{}{trimmed}", " ".repeat(*d));
            }
            Mutation::Swap(i, j) => lines.swap(i % len, j % len),
        }
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Arbitrary bytes (as the file loader would see them, lossily decoded).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_total(&String::from_utf8_lossy(&bytes));
    }

    /// Text made of YAML's structural characters.
    #[test]
    fn yamlish_text_never_panics(text in "[a-z0-9:\\[\\]{}, \n\"'#&*!|>?.-]{0,300}") {
        parse_total(&text);
    }

    /// The valid configuration with up to 4 random edits: keys deleted,
    /// renamed or repeated, values of another type, lines moved.
    #[test]
    fn mutated_configs_never_panic(mutations in proptest::collection::vec(mutation(), 1..5)) {
        parse_total(&apply(&mutations));
    }
}

#[test]
fn the_unmutated_base_is_accepted() {
    assert!(parse_total(&apply(&[])));
    // A deleted required key is refused.
    let zone = BASE
        .lines()
        .position(|l| l.starts_with("  zone:"))
        .expect("zone");
    assert!(!parse_total(&apply(&[Mutation::Delete(zone)])));
}
