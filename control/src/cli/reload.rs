//! `kowabunga reload` (the daemon applies its file now, as on `SIGHUP`)
//! and `kowabunga check FILE` (validation only, no daemon needed).

use std::path::Path;

use crate::api::wire::ReloadDone;

/// The text of a reload that was applied.
pub fn format_reload(done: &ReloadDone) -> String {
    let mut out = format!("reload applied: generation {}\n", done.generation);
    if done.changed.is_empty() {
        out.push_str("no role's summary changed\n");
    }
    for line in &done.changed {
        out.push_str(&format!("changed: {line}\n"));
    }
    out
}

/// Validates `file` as the daemon would (`kowabungad --check`): `Ok` with
/// one line, or the error with its field path.
///
/// # Errors
/// The configuration error's text.
pub fn check(file: &Path) -> Result<String, String> {
    crate::config::load(file)
        .map(|_| format!("{}: config OK\n", file.display()))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_lines() {
        let text = format_reload(&ReloadDone {
            generation: 4,
            changed: vec!["konvey vip 10.0.0.100, 2 endpoints".into()],
        });
        assert_eq!(
            text,
            "reload applied: generation 4\nchanged: konvey vip 10.0.0.100, 2 endpoints\n"
        );
        let text = format_reload(&ReloadDone {
            generation: 2,
            changed: vec![],
        });
        assert!(text.ends_with("no role's summary changed\n"));
    }

    #[test]
    fn check_names_the_field() -> std::io::Result<()> {
        let dir = std::env::temp_dir().join(format!("kw-cli-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let bad = dir.join("bad.yaml");
        std::fs::write(
            &bad,
            "node:\n  zone: z1\n  interfaces: {}\n  bogus: 1\nkiwi: {}\n",
        )?;
        let e = check(&bad).expect_err("unknown field");
        assert!(e.contains("bogus"), "{e}");
        assert!(check(&dir.join("missing.yaml")).is_err());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
