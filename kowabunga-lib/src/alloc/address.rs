//! Subnets, gateways, instance addresses, MACs and VRIDs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};
use rand::Rng;

use super::{AllocError, MacAddr, MAC_PREFIX};

/// Addresses reserved for zone gateways after the subnet's gateway, by
/// default (one per zone of the region; three zones upstream).
pub const DEFAULT_GATEWAY_POOL_SIZE: u32 = 3;

/// A project's private subnet in one region and its address plan:
///
/// * `network` and broadcast are never assigned;
/// * `gateway` (first usable address) is the subnet's router (the Kawaii
///   VIP);
/// * `gateway_pool` follows it: one address per zone's Kawaii instance;
/// * `reserved` ranges are left alone (admin-provided);
/// * instances get the first free address of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSubnet {
    /// The subnet.
    pub cidr: Ipv4Net,
    /// The subnet's default gateway.
    pub gateway: Ipv4Addr,
    /// Inclusive range of zone gateway addresses.
    pub gateway_pool: (Ipv4Addr, Ipv4Addr),
    /// Inclusive ranges never assigned to instances.
    pub reserved: Vec<(Ipv4Addr, Ipv4Addr)>,
}

impl ProjectSubnet {
    /// The default plan of a subnet: gateway = first usable address, then a
    /// gateway pool of `gateway_pool_size` addresses.
    pub fn new(cidr: Ipv4Net, gateway_pool_size: u32) -> Result<Self, AllocError> {
        let net = u32::from(cidr.network());
        let size = 1u64 << (32 - u32::from(cidr.prefix_len()));
        // network + gateway + pool + broadcast + at least one instance.
        if size < u64::from(gateway_pool_size) + 4 {
            return Err(AllocError::Invalid(format!(
                "{cidr} is too small for a gateway and {gateway_pool_size} zone gateways"
            )));
        }
        let gateway = Ipv4Addr::from(net + 1);
        let pool = if gateway_pool_size == 0 {
            (Ipv4Addr::from(net + 2), Ipv4Addr::from(net + 1))
        } else {
            (
                Ipv4Addr::from(net + 2),
                Ipv4Addr::from(net + 1 + gateway_pool_size),
            )
        };
        Ok(ProjectSubnet {
            cidr,
            gateway,
            gateway_pool: pool,
            reserved: Vec::new(),
        })
    }

    /// Whether `addr` may be given to an instance.
    pub fn is_assignable(&self, addr: Ipv4Addr) -> bool {
        let in_range = |(a, b): (Ipv4Addr, Ipv4Addr)| a <= addr && addr <= b;
        self.cidr.contains(&addr)
            && addr != self.cidr.network()
            && addr != self.cidr.broadcast()
            && addr != self.gateway
            && !in_range(self.gateway_pool)
            && !self.reserved.iter().copied().any(in_range)
    }
}

/// Carves a subnet of prefix length `prefix_len` out of the first pool that
/// has a free, aligned block not overlapping any of `taken` (at least the
/// requested size: exactly that size).
pub fn allocate_subnet(
    pools: &[IpNet],
    taken: &[IpNet],
    prefix_len: u8,
) -> Result<IpNet, AllocError> {
    let mut fitting = false;
    for pool in pools {
        if pool.prefix_len() > prefix_len || prefix_len > pool.max_prefix_len() {
            continue;
        }
        fitting = true;
        let Ok(mut candidates) = pool.subnets(prefix_len) else {
            continue;
        };
        if let Some(free) =
            candidates.find(|c| !taken.iter().any(|t| t.contains(c) || c.contains(t)))
        {
            return Ok(free);
        }
    }
    if !fitting {
        return Err(AllocError::Invalid(format!(
            "no subnet pool can hold a /{prefix_len}"
        )));
    }
    Err(AllocError::PoolExhausted {
        pool: "subnet",
        detail: format!("no free /{prefix_len} left in {pools:?}"),
    })
}

/// Gives every zone of `zones` a gateway address from the subnet's gateway
/// pool, keeping the ones in `existing` (zone -> address).
pub fn allocate_zone_gateways(
    subnet: &ProjectSubnet,
    zones: &[String],
    existing: &BTreeMap<String, Ipv4Addr>,
) -> Result<BTreeMap<String, Ipv4Addr>, AllocError> {
    let mut out = BTreeMap::new();
    let mut used: BTreeSet<Ipv4Addr> = existing.values().copied().collect();
    let (first, last) = subnet.gateway_pool;
    for zone in zones {
        if let Some(addr) = existing.get(zone) {
            out.insert(zone.clone(), *addr);
            continue;
        }
        let free = (u32::from(first)..=u32::from(last))
            .map(Ipv4Addr::from)
            .find(|a| !used.contains(a))
            .ok_or_else(|| AllocError::PoolExhausted {
                pool: "gateway",
                detail: format!("no zone gateway left in {first}-{last} for zone {zone}"),
            })?;
        used.insert(free);
        out.insert(zone.clone(), free);
    }
    Ok(out)
}

/// The first address of the subnet that may be assigned (see
/// [`ProjectSubnet`]) and is not in `used`.
pub fn first_free_address(
    subnet: &ProjectSubnet,
    used: &BTreeSet<Ipv4Addr>,
) -> Result<Ipv4Addr, AllocError> {
    let net = u32::from(subnet.cidr.network());
    let bcast = u32::from(subnet.cidr.broadcast());
    (net..=bcast)
        .map(Ipv4Addr::from)
        .find(|a| subnet.is_assignable(*a) && !used.contains(a))
        .ok_or_else(|| AllocError::PoolExhausted {
            pool: "address",
            detail: format!("no free address in {}", subnet.cidr),
        })
}

/// A random, unused MAC in `da:1e:70:xx:xx:xx` (bounded number of draws).
pub fn allocate_mac<R: Rng + ?Sized>(
    used: &BTreeSet<MacAddr>,
    rng: &mut R,
) -> Result<MacAddr, AllocError> {
    const DRAWS: usize = 4096;
    for _ in 0..DRAWS {
        let tail: [u8; 3] = rng.random();
        let mac = MacAddr([
            MAC_PREFIX[0],
            MAC_PREFIX[1],
            MAC_PREFIX[2],
            tail[0],
            tail[1],
            tail[2],
        ]);
        if !used.contains(&mac) {
            return Ok(mac);
        }
    }
    // Dense: scan in order.
    (0u32..1 << 24)
        .map(|n| {
            let b = n.to_be_bytes();
            MacAddr([
                MAC_PREFIX[0],
                MAC_PREFIX[1],
                MAC_PREFIX[2],
                b[1],
                b[2],
                b[3],
            ])
        })
        .find(|m| !used.contains(m))
        .ok_or_else(|| AllocError::PoolExhausted {
            pool: "mac",
            detail: "da:1e:70:xx:xx:xx".into(),
        })
}

/// The first free VRRP router id in 1..=255.
pub fn allocate_vrid(used: &BTreeSet<u8>) -> Result<u8, AllocError> {
    (1..=255u8)
        .find(|v| !used.contains(v))
        .ok_or_else(|| AllocError::PoolExhausted {
            pool: "vrid",
            detail: "1..=255".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn net(s: &str) -> IpNet {
        s.parse().expect("net")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    #[test]
    fn subnets_are_carved_in_order_skipping_taken() {
        let pools = [net("10.0.0.0/24"), net("10.1.0.0/16")];
        let a = allocate_subnet(&pools, &[], 25).expect("a");
        assert_eq!(a, net("10.0.0.0/25"));
        let b = allocate_subnet(&pools, &[a], 25).expect("b");
        assert_eq!(b, net("10.0.0.128/25"));
        let c = allocate_subnet(&pools, &[a, b], 25).expect("c");
        assert_eq!(c, net("10.1.0.0/25"));
        // A taken bigger block covers its halves.
        let d = allocate_subnet(&pools, &[net("10.0.0.0/24"), net("10.1.0.0/24")], 26).expect("d");
        assert_eq!(d, net("10.1.1.0/26"));
        // A taken smaller block inside a candidate makes it unusable.
        let e = allocate_subnet(&[net("10.0.0.0/24")], &[net("10.0.0.8/29")], 25).expect("e");
        assert_eq!(e, net("10.0.0.128/25"));
    }

    #[test]
    fn subnet_pool_exhaustion_and_misfit() {
        let pools = [net("10.0.0.0/25")];
        let taken = [net("10.0.0.0/25")];
        assert!(matches!(
            allocate_subnet(&pools, &taken, 25),
            Err(AllocError::PoolExhausted { pool: "subnet", .. })
        ));
        assert!(matches!(
            allocate_subnet(&pools, &[], 24),
            Err(AllocError::Invalid(_))
        ));
    }

    #[test]
    fn instance_addresses_skip_special_ones() {
        let cidr: Ipv4Net = "10.0.0.0/29".parse().expect("cidr");
        let mut s = ProjectSubnet::new(cidr, 2).expect("plan");
        assert_eq!(s.gateway, ip("10.0.0.1"));
        assert_eq!(s.gateway_pool, (ip("10.0.0.2"), ip("10.0.0.3")));
        s.reserved.push((ip("10.0.0.4"), ip("10.0.0.4")));
        let mut used = BTreeSet::new();
        let a = first_free_address(&s, &used).expect("a");
        assert_eq!(a, ip("10.0.0.5"));
        used.insert(a);
        let b = first_free_address(&s, &used).expect("b");
        assert_eq!(b, ip("10.0.0.6"));
        used.insert(b);
        // .7 is the broadcast.
        assert!(matches!(
            first_free_address(&s, &used),
            Err(AllocError::PoolExhausted {
                pool: "address",
                ..
            })
        ));
        assert!(!s.is_assignable(ip("10.0.0.0")));
        assert!(!s.is_assignable(ip("10.0.0.7")));
        assert!(!s.is_assignable(ip("10.0.1.5")));
        // A freed address is reused first.
        used.remove(&a);
        assert_eq!(first_free_address(&s, &used).expect("reuse"), a);
    }

    #[test]
    fn subnet_too_small_for_plan() {
        let cidr: Ipv4Net = "10.0.0.0/30".parse().expect("cidr");
        assert!(matches!(
            ProjectSubnet::new(cidr, 3),
            Err(AllocError::Invalid(_))
        ));
    }

    #[test]
    fn zone_gateways_from_pool() {
        let s = ProjectSubnet::new("10.0.0.0/25".parse().expect("cidr"), 2).expect("plan");
        let zones = vec!["eu-west-a".to_string(), "eu-west-b".to_string()];
        let gws = allocate_zone_gateways(&s, &zones, &BTreeMap::new()).expect("gws");
        assert_eq!(gws["eu-west-a"], ip("10.0.0.2"));
        assert_eq!(gws["eu-west-b"], ip("10.0.0.3"));
        // Stable: existing ones are kept, a third zone finds no room.
        let mut existing = BTreeMap::new();
        existing.insert("eu-west-b".to_string(), ip("10.0.0.2"));
        let gws = allocate_zone_gateways(&s, &zones, &existing).expect("gws");
        assert_eq!(gws["eu-west-b"], ip("10.0.0.2"));
        assert_eq!(gws["eu-west-a"], ip("10.0.0.3"));
        let three = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        assert!(matches!(
            allocate_zone_gateways(&s, &three, &BTreeMap::new()),
            Err(AllocError::PoolExhausted {
                pool: "gateway",
                ..
            })
        ));
    }

    #[test]
    fn macs_have_the_prefix_and_are_unique() {
        let mut rng = rand_chacha_like();
        let mut used = BTreeSet::new();
        for _ in 0..1000 {
            let m = allocate_mac(&used, &mut rng).expect("mac");
            assert_eq!(&m.0[..3], &MAC_PREFIX);
            assert!(m.to_string().starts_with("da:1e:70:"));
            assert!(used.insert(m), "duplicate {m}");
        }
        let m: MacAddr = "da:1e:70:0a:0b:0c".parse().expect("parse");
        assert_eq!(m.to_string(), "da:1e:70:0a:0b:0c");
        assert!("da:1e:70:0a:0b".parse::<MacAddr>().is_err());
        assert!("da:1e:70:0a:0b:0c:0d".parse::<MacAddr>().is_err());
    }

    fn rand_chacha_like() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn vrid_pool() {
        let mut used = BTreeSet::new();
        assert_eq!(allocate_vrid(&used).expect("1"), 1);
        used.extend([1, 2, 4]);
        assert_eq!(allocate_vrid(&used).expect("3"), 3);
        let all: BTreeSet<u8> = (1..=255).collect();
        assert!(matches!(
            allocate_vrid(&all),
            Err(AllocError::PoolExhausted { pool: "vrid", .. })
        ));
    }
}
