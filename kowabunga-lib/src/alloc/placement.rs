//! Placement on the least-loaded hypervisor of a zone, and Multi-Zone
//! Resources.

use super::AllocError;

/// What a hypervisor already runs, for placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HypervisorLoad {
    /// Hypervisor name.
    pub name: String,
    /// Zone it belongs to.
    pub zone: String,
    /// Instances it runs.
    pub instances: u32,
    /// vCPUs of those instances.
    pub vcpus: u32,
    /// Memory of those instances, GiB.
    pub memory_gb: u64,
    /// Names of those instances (siblings of the same name are spread).
    pub instance_names: Vec<String>,
}

/// Upstream's score: `2 x instances + vCPUs + memory GiB`, plus 1000 when
/// the hypervisor already runs an instance called `name` (a sibling, e.g.
/// the other Kawaii of a Multi-Zone pair). Lower is better.
pub fn placement_score(h: &HypervisorLoad, name: &str) -> u64 {
    let sibling = if h.instance_names.iter().any(|n| n == name) {
        1000
    } else {
        0
    };
    2 * u64::from(h.instances) + u64::from(h.vcpus) + h.memory_gb + sibling
}

/// The hypervisor of `zone` with the lowest [`placement_score`] (ties: the
/// first in name order).
pub fn place<'a>(
    hypervisors: &'a [HypervisorLoad],
    zone: &str,
    name: &str,
) -> Result<&'a HypervisorLoad, AllocError> {
    hypervisors
        .iter()
        .filter(|h| h.zone == zone)
        .min_by(|a, b| {
            placement_score(a, name)
                .cmp(&placement_score(b, name))
                .then_with(|| a.name.cmp(&b.name))
        })
        .ok_or_else(|| AllocError::NoHypervisor(zone.to_owned()))
}

/// One instance of a Multi-Zone Resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneInstance {
    /// Instance name: `<resource>-<zone>`.
    pub name: String,
    /// Its zone.
    pub zone: String,
}

/// A Multi-Zone Resource (Kawaii, Konvey) gets one instance per zone of its
/// region, named `<resource>-<zone>`.
pub fn expand_multi_zone(resource: &str, zones: &[String]) -> Vec<ZoneInstance> {
    zones
        .iter()
        .map(|z| ZoneInstance {
            name: format!("{resource}-{z}"),
            zone: z.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(name: &str, zone: &str, instances: u32, vcpus: u32, mem: u64) -> HypervisorLoad {
        HypervisorLoad {
            name: name.into(),
            zone: zone.into(),
            instances,
            vcpus,
            memory_gb: mem,
            instance_names: Vec::new(),
        }
    }

    #[test]
    fn least_loaded_of_the_zone_wins() {
        let hvs = vec![
            hv("kaktus-1", "a", 2, 4, 8),  // 4 + 4 + 8 = 16
            hv("kaktus-2", "a", 1, 8, 16), // 2 + 8 + 16 = 26
            hv("kaktus-3", "b", 0, 0, 0),  // other zone
        ];
        assert_eq!(placement_score(&hvs[0], "x"), 16);
        assert_eq!(place(&hvs, "a", "x").expect("a").name, "kaktus-1");
        assert_eq!(place(&hvs, "b", "x").expect("b").name, "kaktus-3");
        assert_eq!(
            place(&hvs, "c", "x").expect_err("none"),
            AllocError::NoHypervisor("c".into())
        );
    }

    #[test]
    fn siblings_are_spread_and_ties_break_by_name() {
        let mut hvs = vec![hv("kaktus-2", "a", 0, 0, 0), hv("kaktus-1", "a", 0, 0, 0)];
        assert_eq!(place(&hvs, "a", "kawaii").expect("tie").name, "kaktus-1");
        hvs[1].instance_names.push("kawaii".into());
        assert_eq!(placement_score(&hvs[1], "kawaii"), 1000);
        assert_eq!(place(&hvs, "a", "kawaii").expect("spread").name, "kaktus-2");
    }

    #[test]
    fn multi_zone_expansion() {
        let zones = vec!["eu-west-a".to_string(), "eu-west-b".to_string()];
        let v = expand_multi_zone("kawaii-acme", &zones);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].name, "kawaii-acme-eu-west-a");
        assert_eq!(v[1].zone, "eu-west-b");
        assert!(expand_multi_zone("x", &[]).is_empty());
    }
}
