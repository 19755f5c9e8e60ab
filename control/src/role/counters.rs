//! Counters of several roles summed (Kawaii and Konvey share the counter
//! names; a node running both logs their sum), and the line of what moved
//! since the last reading.

use kowabunga_dataplane::stats::STAT_COUNT;
use kowabunga_dataplane::Counters;

/// `a + b`, counter by counter.
pub fn sum(a: Option<&Counters>, b: &Counters) -> Counters {
    let Some(a) = a else {
        return b.clone();
    };
    let mut values = [kowabunga_bindings::kw_counter::default(); STAT_COUNT];
    for ((slot, (_, x)), (_, y)) in values.iter_mut().zip(a.iter()).zip(b.iter()) {
        slot.packets = x.packets.wrapping_add(y.packets);
        slot.bytes = x.bytes.wrapping_add(y.bytes);
    }
    Counters::from_values(values)
}

/// `name=packets` of every counter that moved between `before` and `now`
/// (all of `now` without `before`), space separated.
pub fn moved_line(before: Option<&Counters>, now: &Counters) -> String {
    let delta = match before {
        Some(before) => now.since(before),
        None => now.clone(),
    };
    delta
        .iter()
        .filter(|(_, c)| c.packets > 0)
        .map(|(name, c)| format!("{name}={}", c.packets))
        .collect::<Vec<_>>()
        .join(" ")
}
