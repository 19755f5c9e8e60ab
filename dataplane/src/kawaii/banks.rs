//! Applying a configuration: double-buffered banks of `kw_config` + rules.
//!
//! A configuration is written to the *inactive* bank (rules and their index
//! in the LPM tries first, see [`super::index`], then `kw_config[bank]`) and then `kw_active[0]` is flipped to `bank + 1`, so a
//! packet sees either the old bank or the new one, never a mix. Conntrack is
//! untouched: established flows survive the flip.
//!
//! Two applies in quick succession reuse the bank that was active just
//! before: a packet still running on another CPU with the old bank could
//! then see the rewrite. The daemon applies at human time scales, far above
//! the microseconds an XDP program runs.

use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    Array, HashMap, MapError,
};
use kowabunga_bindings::{
    kw_config, kw_rule, kw_rule6, kw_rule_addr, kw_rule_addr6, kw_rule_hit, kw_rule_node,
    kw_rule_port, kw_table, KW_ACTIVE_NONE, KW_BANKS, KW_MAX_IPSEC, KW_MAX_PEERINGS,
    KW_MAX_RULES_PER_TABLE, KW_MAX_VIPS,
};

use crate::{
    kawaii::{
        index::BankIndex, MAP_ACTIVE, MAP_CONFIG, MAP_RULES, MAP_RULES6, MAP_RULE_ADDR,
        MAP_RULE_ADDR6, MAP_RULE_EXACT, MAP_RULE_PORT, RULES_PER_BANK,
    },
    Kawaii, KawaiiConfig,
};

/// Number of rule tables (`KW_TABLE_COUNT`).
pub const TABLE_COUNT: usize = kw_table::KW_TABLE_COUNT as usize;

/// The rule tables of a configuration, indexed by `kw_table` (ingress,
/// egress, dnat, peer_in, peer_out).
pub type Tables = [Vec<kw_rule>; TABLE_COUNT];

/// The IPv6 rules of `firewall.ingress`, in order (`kw_rules6` of a bank).
pub type Tables6 = Vec<kw_rule6>;

/// Name of the IPv6 ingress table, for messages.
pub const TABLE6_NAME: &str = "ingress6";

/// Name of each `kw_table`, for messages.
pub const TABLE_NAMES: [&str; TABLE_COUNT] = ["ingress", "egress", "dnat", "peer_in", "peer_out"];

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule table is too long.
    #[error("rule table {table} has {len} rules, at most {max} fit")]
    TooManyRules {
        /// The table name.
        table: &'static str,
        /// Its length.
        len: usize,
        /// `KW_MAX_RULES_PER_TABLE`.
        max: u32,
    },
    /// A count of `kw_config` is above its array size.
    #[error("kw_config.{field} is {value}, at most {max}")]
    CountTooLarge {
        /// `n_vips`, `n_peerings` or `n_ipsec`.
        field: &'static str,
        /// The value.
        value: u8,
        /// The limit.
        max: u32,
    },
    /// The SNAT port range is empty.
    #[error("kw_config SNAT port range {min}-{max} is empty")]
    EmptyPortRange {
        /// `port_min`.
        min: u16,
        /// `port_max`.
        max: u16,
    },
    /// A rule has an empty port range.
    #[error("rule {index} of table {table} has an empty port range {lo}-{hi}")]
    EmptyRulePorts {
        /// The table name.
        table: &'static str,
        /// Index inside the table.
        index: usize,
        /// `port_lo`.
        lo: u16,
        /// `port_hi`.
        hi: u16,
    },
    /// A rule's netmask is not a prefix (the rule index keys prefixes).
    #[error("rule {index} of table {table} has netmask {mask:#010x}, not a prefix")]
    NotAPrefix {
        /// The table name.
        table: &'static str,
        /// Index inside the table.
        index: usize,
        /// The mask, host order.
        mask: u32,
    },
    /// An IPv6 rule's prefix length is above 128.
    #[error("rule {index} of table ingress6 has prefix length {len}, at most 128")]
    BadPrefix6 {
        /// Index inside the table.
        index: usize,
        /// The length.
        len: u32,
    },
    /// The rule index of a bank would not fit `kw_rule_port` or
    /// `kw_rule_exact`.
    #[error("the rule index needs {entries} port entries, at most {max} fit in a bank")]
    IndexTooLarge {
        /// Entries needed.
        entries: usize,
        /// Entries of a bank.
        max: usize,
    },
    /// A map is missing from the object.
    #[error("map {0} not found in kawaii.o")]
    MissingMap(&'static str),
    /// A map operation failed.
    #[error("map {map}: {what} failed")]
    Map {
        /// The map.
        map: &'static str,
        /// The operation.
        what: &'static str,
        /// Why.
        #[source]
        source: MapError,
    },
    /// The active bank read back from the kernel is inconsistent.
    #[error("active bank {bank} is corrupt: {detail}")]
    Corrupt {
        /// The bank.
        bank: u32,
        /// What is wrong.
        detail: String,
    },
}

/// A configuration as read back from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveConfig {
    /// The active bank (0 or 1).
    pub bank: u32,
    /// `kw_config[bank]`, with `rule_start` / `rule_count` as written.
    pub config: kw_config,
    /// The rule tables of the bank.
    pub tables: Tables,
    /// The IPv6 ingress rules of the bank.
    pub ingress6: Tables6,
}

/// Validates `config` and `tables` and packs them as one bank: returns the
/// config with `rule_start` / `rule_count` filled in (tables one after
/// another) and the rules in bank order. Pure: touches no map.
///
/// ```
/// use kowabunga_bindings::{kw_config, kw_rule};
/// use kowabunga_dataplane::kawaii::banks::{pack, Tables};
///
/// let mut tables: Tables = Default::default();
/// tables[0].push(kw_rule { port_lo: 22, port_hi: 22, proto: 6, ..Default::default() });
/// tables[2].push(kw_rule { port_lo: 80, port_hi: 80, proto: 6, ..Default::default() });
/// let (config, rules) = pack(&kw_config::default(), &tables)?;
/// assert_eq!(config.rule_start, [0, 1, 1, 2, 2]);
/// assert_eq!(config.rule_count, [1, 0, 1, 0, 0]);
/// assert_eq!(rules.len(), 2);
/// # Ok::<(), kowabunga_dataplane::kawaii::banks::Error>(())
/// ```
pub fn pack(config: &kw_config, tables: &Tables) -> Result<(kw_config, Vec<kw_rule>), Error> {
    validate(config, tables)?;
    let mut packed = *config;
    let mut rules = Vec::with_capacity(tables.iter().map(Vec::len).sum());
    for (t, table) in tables.iter().enumerate() {
        // Bounded by validate(): at most TABLE_COUNT * 256 rules in a bank.
        packed.rule_start[t] = rules.len() as u16;
        packed.rule_count[t] = table.len() as u16;
        rules.extend_from_slice(table);
    }
    Ok((packed, rules))
}

/// Checks the limits of the ABI; see [`Error`] for what is rejected.
pub fn validate(config: &kw_config, tables: &Tables) -> Result<(), Error> {
    for (t, table) in tables.iter().enumerate() {
        if table.len() > KW_MAX_RULES_PER_TABLE as usize {
            return Err(Error::TooManyRules {
                table: TABLE_NAMES[t],
                len: table.len(),
                max: KW_MAX_RULES_PER_TABLE,
            });
        }
        if let Some((index, r)) = table
            .iter()
            .enumerate()
            .find(|(_, r)| r.port_lo > r.port_hi)
        {
            return Err(Error::EmptyRulePorts {
                table: TABLE_NAMES[t],
                index,
                lo: r.port_lo,
                hi: r.port_hi,
            });
        }
    }
    for (field, value, max) in [
        ("n_vips", config.n_vips, KW_MAX_VIPS),
        ("n_peerings", config.n_peerings, KW_MAX_PEERINGS),
        ("n_ipsec", config.n_ipsec, KW_MAX_IPSEC),
    ] {
        if u32::from(value) > max {
            return Err(Error::CountTooLarge { field, value, max });
        }
    }
    if config.port_min > config.port_max {
        return Err(Error::EmptyPortRange {
            min: config.port_min,
            max: config.port_max,
        });
    }
    Ok(())
}

/// Checks the IPv6 ingress rules against the ABI's limits: their count,
/// port ranges and prefix lengths.
pub fn validate6(rules: &[kw_rule6]) -> Result<(), Error> {
    if rules.len() > KW_MAX_RULES_PER_TABLE as usize {
        return Err(Error::TooManyRules {
            table: TABLE6_NAME,
            len: rules.len(),
            max: KW_MAX_RULES_PER_TABLE,
        });
    }
    for (index, r) in rules.iter().enumerate() {
        if r.port_lo > r.port_hi {
            return Err(Error::EmptyRulePorts {
                table: TABLE6_NAME,
                index,
                lo: r.port_lo,
                hi: r.port_hi,
            });
        }
        if r.prefix_len > 128 {
            return Err(Error::BadPrefix6 {
                index,
                len: u32::from(r.prefix_len),
            });
        }
    }
    Ok(())
}

/// The bank to write next, given `kw_active[0]`: the one that is not active
/// (bank 0 when none is, or when the word holds garbage).
pub fn inactive_bank(active_word: u32) -> u32 {
    match active_word {
        1 => 1,
        _ => 0,
    }
}

/// The active bank encoded in `kw_active[0]`, if any.
pub fn active_bank_of(active_word: u32) -> Option<u32> {
    (active_word != KW_ACTIVE_NONE && active_word <= KW_BANKS).then(|| active_word - 1)
}

fn map_err(map: &'static str, what: &'static str) -> impl FnOnce(MapError) -> Error {
    move |source| Error::Map { map, what, source }
}

impl Kawaii {
    fn array<V: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<Array<&aya::maps::MapData, V>, Error> {
        let map = self.map(name).ok_or(Error::MissingMap(name))?;
        Array::try_from(map).map_err(map_err(name, "open"))
    }

    fn array_mut<V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut aya::maps::MapData, V>, Error> {
        let map = self.map_mut(name).ok_or(Error::MissingMap(name))?;
        Array::try_from(map).map_err(map_err(name, "open"))
    }

    /// The raw `kw_active[0]` word: active bank + 1, 0 when unconfigured.
    pub fn active_word(&self) -> Result<u32, Error> {
        self.array::<u32>(MAP_ACTIVE)?
            .get(&0, 0)
            .map_err(map_err(MAP_ACTIVE, "read"))
    }

    /// The active bank, or `None` when no configuration was applied.
    pub fn active_bank(&self) -> Result<Option<u32>, Error> {
        Ok(active_bank_of(self.active_word()?))
    }

    /// Validates and applies a configuration; returns the bank now active.
    ///
    /// Nothing is written when validation fails (see
    /// [`KawaiiConfig::encode`]).
    ///
    /// ```no_run
    /// # let mut kawaii = kowabunga_dataplane::Kawaii::load(&Default::default())?;
    /// use kowabunga_dataplane::KawaiiConfig;
    ///
    /// let config = KawaiiConfig::new("203.0.113.10".parse()?, "10.0.0.0/25".parse()?);
    /// let bank = kawaii.apply(&config)?;
    /// assert_eq!(kawaii.active_bank()?, Some(bank));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn apply(&mut self, config: &KawaiiConfig) -> Result<u32, Error> {
        let (raw, tables) = config.encode()?;
        let ingress6 = config.encode6()?;
        self.apply_raw6(&raw, &tables, &ingress6)
    }

    /// [`Kawaii::apply`] at the ABI level: `kw_config` and its tables as
    /// the kernel reads them (the tests' reference model works at this
    /// level). `rule_start` / `rule_count` of `config` are ignored and
    /// recomputed (tables packed in order).
    pub fn apply_raw(&mut self, config: &kw_config, tables: &Tables) -> Result<u32, Error> {
        self.apply_raw6(config, tables, &[])
    }

    /// [`Kawaii::apply_raw`] with the IPv6 ingress rules (`kw_rules6`).
    pub fn apply_raw6(
        &mut self,
        config: &kw_config,
        tables: &Tables,
        ingress6: &[kw_rule6],
    ) -> Result<u32, Error> {
        let (mut packed, rules) = pack(config, tables)?;
        validate6(ingress6)?;
        // bounded by validate6(): at most KW_MAX_RULES_PER_TABLE
        packed.rule6_count = ingress6.len() as u16;
        let bank = inactive_bank(self.active_word()?);
        let index = BankIndex::build_all(bank, tables, ingress6)?;

        let mut rule_map = self.array_mut::<kw_rule>(MAP_RULES)?;
        let base = bank * RULES_PER_BANK;
        for (i, rule) in rules.iter().enumerate() {
            // i < RULES_PER_BANK, checked by pack().
            rule_map
                .set(base + i as u32, rule, 0)
                .map_err(map_err(MAP_RULES, "write"))?;
        }
        let mut rule6_map = self.array_mut::<kw_rule6>(MAP_RULES6)?;
        let base6 = bank * KW_MAX_RULES_PER_TABLE;
        for (i, rule) in ingress6.iter().enumerate() {
            rule6_map
                .set(base6 + i as u32, rule, 0)
                .map_err(map_err(MAP_RULES6, "write"))?;
        }
        self.write_index(bank, index)?;
        self.array_mut::<kw_config>(MAP_CONFIG)?
            .set(bank, packed, 0)
            .map_err(map_err(MAP_CONFIG, "write"))?;
        self.array_mut::<u32>(MAP_ACTIVE)?
            .set(0, bank + 1, 0)
            .map_err(map_err(MAP_ACTIVE, "flip"))?;
        tracing::debug!(bank, rules = rules.len(), "configuration applied");
        Ok(bank)
    }

    /// What the rule index of `bank` holds in the kernel: the copy kept by
    /// the last apply, or read from the tries (pinned maps after a restart).
    fn index_of(&mut self, bank: u32) -> Result<BankIndex, Error> {
        match self.rule_index[bank as usize].take() {
            Some(known) => Ok(known),
            None => self.read_rule_index(bank),
        }
    }

    /// Reads the rule index of `bank` back from the `kw_rule_addr` and
    /// `kw_rule_port` tries and the `kw_rule_exact` hash.
    pub fn read_rule_index(&self, bank: u32) -> Result<BankIndex, Error> {
        let mut index = BankIndex::default();
        let map = self
            .map(MAP_RULE_ADDR)
            .ok_or(Error::MissingMap(MAP_RULE_ADDR))?;
        let addr = LpmTrie::<_, kw_rule_addr, kw_rule_node>::try_from(map)
            .map_err(map_err(MAP_RULE_ADDR, "open"))?;
        for entry in addr.iter() {
            let (k, v) = entry.map_err(map_err(MAP_RULE_ADDR, "read"))?;
            if u32::from(k.data().bank) == bank {
                index.addr.insert((k.prefix_len(), k.data()), v);
            }
        }
        let map = self
            .map(MAP_RULE_ADDR6)
            .ok_or(Error::MissingMap(MAP_RULE_ADDR6))?;
        let addr6 = LpmTrie::<_, kw_rule_addr6, kw_rule_node>::try_from(map)
            .map_err(map_err(MAP_RULE_ADDR6, "open"))?;
        for entry in addr6.iter() {
            let (k, v) = entry.map_err(map_err(MAP_RULE_ADDR6, "read"))?;
            if u32::from(k.data().bank) == bank {
                index.addr6.insert((k.prefix_len(), k.data()), v);
            }
        }
        let map = self
            .map(MAP_RULE_PORT)
            .ok_or(Error::MissingMap(MAP_RULE_PORT))?;
        let port = LpmTrie::<_, kw_rule_port, kw_rule_hit>::try_from(map)
            .map_err(map_err(MAP_RULE_PORT, "open"))?;
        for entry in port.iter() {
            let (k, v) = entry.map_err(map_err(MAP_RULE_PORT, "read"))?;
            if u32::from(k.data().bank) == bank {
                index.port.insert((k.prefix_len(), k.data()), v);
            }
        }
        let map = self
            .map(MAP_RULE_EXACT)
            .ok_or(Error::MissingMap(MAP_RULE_EXACT))?;
        let exact = HashMap::<_, kw_rule_port, kw_rule_hit>::try_from(map)
            .map_err(map_err(MAP_RULE_EXACT, "open"))?;
        for entry in exact.iter() {
            let (k, v) = entry.map_err(map_err(MAP_RULE_EXACT, "read"))?;
            if u32::from(k.bank) == bank {
                index.exact.insert(k, v);
            }
        }
        Ok(index)
    }

    /// Brings the rule index of the (inactive) `bank` to `next`: removes
    /// what `next` lacks, writes what is new or changed. On failure the
    /// kept copy is dropped, so the next apply reads the tries again.
    fn write_index(&mut self, bank: u32, next: BankIndex) -> Result<(), Error> {
        let diff = self.index_of(bank)?.diff(&next);
        {
            let map = self
                .map_mut(MAP_RULE_ADDR)
                .ok_or(Error::MissingMap(MAP_RULE_ADDR))?;
            let mut addr = LpmTrie::<_, kw_rule_addr, kw_rule_node>::try_from(map)
                .map_err(map_err(MAP_RULE_ADDR, "open"))?;
            for (len, data) in &diff.addr_remove {
                addr.remove(&Key::new(*len, *data))
                    .map_err(map_err(MAP_RULE_ADDR, "remove"))?;
            }
            for ((len, data), v) in &diff.addr_set {
                addr.insert(&Key::new(*len, *data), v, 0)
                    .map_err(map_err(MAP_RULE_ADDR, "write"))?;
            }
        }
        {
            let map = self
                .map_mut(MAP_RULE_ADDR6)
                .ok_or(Error::MissingMap(MAP_RULE_ADDR6))?;
            let mut addr6 = LpmTrie::<_, kw_rule_addr6, kw_rule_node>::try_from(map)
                .map_err(map_err(MAP_RULE_ADDR6, "open"))?;
            for (len, data) in &diff.addr6_remove {
                addr6
                    .remove(&Key::new(*len, *data))
                    .map_err(map_err(MAP_RULE_ADDR6, "remove"))?;
            }
            for ((len, data), v) in &diff.addr6_set {
                addr6
                    .insert(&Key::new(*len, *data), v, 0)
                    .map_err(map_err(MAP_RULE_ADDR6, "write"))?;
            }
        }
        {
            let map = self
                .map_mut(MAP_RULE_PORT)
                .ok_or(Error::MissingMap(MAP_RULE_PORT))?;
            let mut port = LpmTrie::<_, kw_rule_port, kw_rule_hit>::try_from(map)
                .map_err(map_err(MAP_RULE_PORT, "open"))?;
            for (len, data) in &diff.port_remove {
                port.remove(&Key::new(*len, *data))
                    .map_err(map_err(MAP_RULE_PORT, "remove"))?;
            }
            for ((len, data), v) in &diff.port_set {
                port.insert(&Key::new(*len, *data), v, 0)
                    .map_err(map_err(MAP_RULE_PORT, "write"))?;
            }
        }
        let map = self
            .map_mut(MAP_RULE_EXACT)
            .ok_or(Error::MissingMap(MAP_RULE_EXACT))?;
        let mut exact = HashMap::<_, kw_rule_port, kw_rule_hit>::try_from(map)
            .map_err(map_err(MAP_RULE_EXACT, "open"))?;
        for k in &diff.exact_remove {
            exact.remove(k).map_err(map_err(MAP_RULE_EXACT, "remove"))?;
        }
        for (k, v) in &diff.exact_set {
            exact
                .insert(k, v, 0)
                .map_err(map_err(MAP_RULE_EXACT, "write"))?;
        }
        tracing::debug!(bank, updates = diff.len(), "rule index written");
        self.rule_index[bank as usize] = Some(next);
        Ok(())
    }

    /// Makes the programs pass everything again (`kw_active[0] = 0`).
    /// Conntrack is kept.
    pub fn deactivate(&mut self) -> Result<(), Error> {
        self.array_mut::<u32>(MAP_ACTIVE)?
            .set(0, KW_ACTIVE_NONE, 0)
            .map_err(map_err(MAP_ACTIVE, "write"))
    }

    /// Reads back the active configuration and its rule tables, or `None`
    /// when none was applied.
    pub fn active_config(&self) -> Result<Option<ActiveConfig>, Error> {
        let Some(bank) = self.active_bank()? else {
            return Ok(None);
        };
        let config: kw_config = self
            .array::<kw_config>(MAP_CONFIG)?
            .get(&bank, 0)
            .map_err(map_err(MAP_CONFIG, "read"))?;
        let rule_map = self.array::<kw_rule>(MAP_RULES)?;
        let mut tables = Tables::default();
        for (t, table) in tables.iter_mut().enumerate() {
            let (start, count) = (
                u32::from(config.rule_start[t]),
                u32::from(config.rule_count[t]),
            );
            if count > KW_MAX_RULES_PER_TABLE || start + count > RULES_PER_BANK {
                return Err(Error::Corrupt {
                    bank,
                    detail: format!(
                        "table {} spans rules {start}..{}",
                        TABLE_NAMES[t],
                        start + count
                    ),
                });
            }
            for i in start..start + count {
                table.push(
                    rule_map
                        .get(&(bank * RULES_PER_BANK + i), 0)
                        .map_err(map_err(MAP_RULES, "read"))?,
                );
            }
        }
        let count6 = u32::from(config.rule6_count);
        if count6 > KW_MAX_RULES_PER_TABLE {
            return Err(Error::Corrupt {
                bank,
                detail: format!("{count6} IPv6 ingress rules"),
            });
        }
        let rule6_map = self.array::<kw_rule6>(MAP_RULES6)?;
        let ingress6 = (0..count6)
            .map(|i| {
                rule6_map
                    .get(&(bank * KW_MAX_RULES_PER_TABLE + i), 0)
                    .map_err(map_err(MAP_RULES6, "read"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(ActiveConfig {
            bank,
            config,
            tables,
            ingress6,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(port: u16) -> kw_rule {
        kw_rule {
            port_lo: port,
            port_hi: port,
            proto: 6,
            ..Default::default()
        }
    }

    #[test]
    fn packs_tables_one_after_another() {
        let mut tables = Tables::default();
        tables[0] = vec![rule(1), rule(2)];
        tables[2] = vec![rule(3)];
        tables[4] = vec![rule(4), rule(5), rule(6)];
        let (config, rules) = pack(&kw_config::default(), &tables).expect("valid");
        assert_eq!(config.rule_start, [0, 2, 2, 3, 3]);
        assert_eq!(config.rule_count, [2, 0, 1, 0, 3]);
        let ports: Vec<u16> = rules.iter().map(|r| r.port_lo).collect();
        assert_eq!(ports, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn full_tables_fit_the_bank() {
        let max = KW_MAX_RULES_PER_TABLE as usize;
        let tables: Tables = std::array::from_fn(|_| vec![rule(1); max]);
        let (config, rules) = pack(&kw_config::default(), &tables).expect("valid");
        assert_eq!(rules.len() as u32, RULES_PER_BANK);
        assert_eq!(usize::from(config.rule_start[4]), 4 * max);
    }

    #[test]
    fn rejects_what_does_not_fit() {
        let mut tables = Tables::default();
        let too_many = KW_MAX_RULES_PER_TABLE as usize + 1;
        tables[1] = vec![rule(1); too_many];
        assert!(matches!(
            pack(&kw_config::default(), &tables),
            Err(Error::TooManyRules {
                table: "egress",
                len,
                ..
            }) if len == too_many
        ));

        let tables = Tables::default();
        for (field, config) in [
            (
                "n_vips",
                kw_config {
                    n_vips: 17,
                    ..Default::default()
                },
            ),
            (
                "n_peerings",
                kw_config {
                    n_peerings: 17,
                    ..Default::default()
                },
            ),
            (
                "n_ipsec",
                kw_config {
                    n_ipsec: 255,
                    ..Default::default()
                },
            ),
        ] {
            match validate(&config, &tables) {
                Err(Error::CountTooLarge { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let config = kw_config {
            n_vips: 16,
            n_peerings: 16,
            n_ipsec: 16,
            ..Default::default()
        };
        assert!(validate(&config, &tables).is_ok());

        let config = kw_config {
            port_min: 2000,
            port_max: 1000,
            ..Default::default()
        };
        assert!(matches!(
            validate(&config, &tables),
            Err(Error::EmptyPortRange { .. })
        ));

        let mut tables = Tables::default();
        tables[2] = vec![
            rule(1),
            kw_rule {
                port_lo: 9,
                port_hi: 8,
                ..Default::default()
            },
        ];
        assert!(matches!(
            validate(&kw_config::default(), &tables),
            Err(Error::EmptyRulePorts {
                table: "dnat",
                index: 1,
                ..
            })
        ));
    }

    #[test]
    fn banks_alternate() {
        assert_eq!(inactive_bank(KW_ACTIVE_NONE), 0);
        assert_eq!(inactive_bank(1), 1);
        assert_eq!(inactive_bank(2), 0);
        assert_eq!(inactive_bank(99), 0);
        assert_eq!(active_bank_of(0), None);
        assert_eq!(active_bank_of(1), Some(0));
        assert_eq!(active_bank_of(2), Some(1));
        assert_eq!(active_bank_of(3), None);
    }
}
