//! Whether a validated `kawaii` section fits the rule index of one bank.
//!
//! The rule index copies a rule of a short prefix into every longer prefix
//! under it, and cuts port ranges into power-of-two blocks, so its size is
//! not the rule count. It is computed here exactly as the dataplane will
//! build it (`BankIndex::compile`, pure), so a configuration that would be
//! refused at apply is refused by validation instead, with the table that
//! takes the most entries as the field path.

use kowabunga_dataplane::kawaii::index::{
    BankIndex, IndexUsage, EXACT_ENTRIES_PER_BANK, INDEX_TABLES, PORT_ENTRIES_PER_BANK,
};

use super::ValidKawaii;
use crate::config::error::{err, ErrorKind, ValidationError};
use crate::kawaii::compile::compile_section;

/// Field path of each index table (`kw_table` order, then the IPv6 rules).
const TABLE_PATHS: [&str; INDEX_TABLES] = [
    "kawaii.firewall.ingress",
    "kawaii.firewall.egress",
    "kawaii.dnat",
    "kawaii.vpc_peerings[*].ingress",
    "kawaii.vpc_peerings[*].egress",
    "kawaii.firewall.ingress",
];

/// How many index entries `k` needs, per table.
///
/// `None` when the section does not encode, which validation has already
/// ruled out (the apply would report it).
pub fn index_usage(k: &ValidKawaii) -> Option<IndexUsage> {
    let config = compile_section(k, (1024, u16::MAX));
    let (_, tables) = config.encode().ok()?;
    let ingress6 = config.encode6().ok()?;
    Some(BankIndex::compile(0, &tables, &ingress6).ok()?.usage())
}

/// Refuses a section whose rule index does not fit a bank.
///
/// # Errors
/// [`ErrorKind::IndexTooLarge`] at the path of the table with the most
/// entries in the map that overflows.
pub fn check_index(k: &ValidKawaii) -> Result<(), ValidationError> {
    let Some(usage) = index_usage(k) else {
        return Ok(());
    };
    for (map, per_table, max) in [
        ("kw_rule_port", usage.port, PORT_ENTRIES_PER_BANK),
        ("kw_rule_exact", usage.exact, EXACT_ENTRIES_PER_BANK),
    ] {
        let entries: usize = per_table.iter().sum();
        if entries <= max {
            continue;
        }
        let (t, own) = per_table
            .iter()
            .copied()
            .enumerate()
            .max_by_key(|&(_, n)| n)
            .unwrap_or((0, 0));
        return err(
            TABLE_PATHS[t],
            ErrorKind::IndexTooLarge {
                map,
                entries,
                own,
                max,
            },
        );
    }
    Ok(())
}
