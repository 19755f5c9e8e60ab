//! Plain-text tables: columns padded to their widest cell, two spaces
//! apart, no trailing spaces.

/// Renders `header` and `rows` as aligned columns, one line each.
///
/// ```
/// use kowabunga_control::cli::table::render;
/// let t = render(&["NAME", "STATE"], &[vec!["web".into(), "up".into()]]);
/// assert_eq!(t, "NAME  STATE\nweb   up\n");
/// ```
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths.get(i).copied().unwrap_or(0);
            for _ in cell.chars().count()..pad {
                line.push(' ');
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A duration in seconds as `1h02m`, `3m05s`, `42s`.
///
/// ```
/// use kowabunga_control::cli::table::human_secs;
/// assert_eq!(human_secs(42), "42s");
/// assert_eq!(human_secs(185), "3m05s");
/// assert_eq!(human_secs(3720), "1h02m");
/// assert_eq!(human_secs(90000), "1d01h");
/// ```
pub fn human_secs(s: u64) -> String {
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let t = render(
            &["A", "LONG HEADER", "C"],
            &[
                vec!["wide cell".into(), "x".into(), "1".into()],
                vec!["y".into(), "z".into(), String::new()],
            ],
        );
        assert_eq!(
            t,
            "A          LONG HEADER  C\n\
             wide cell  x            1\n\
             y          z\n"
        );
        assert_eq!(render(&["ONLY"], &[]), "ONLY\n");
    }
}
