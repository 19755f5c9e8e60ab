//! Project quotas (0 = unlimited), checked before anything is created.

use crate::model::Quotas;

use super::AllocError;

/// Resources used (or requested) by a project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Instances.
    pub instances: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory, GiB.
    pub memory: u64,
    /// Storage, GiB.
    pub storage: u64,
}

impl Usage {
    /// Sum of two usages.
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            instances: self.instances.saturating_add(other.instances),
            vcpus: self.vcpus.saturating_add(other.vcpus),
            memory: self.memory.saturating_add(other.memory),
            storage: self.storage.saturating_add(other.storage),
        }
    }

    /// `self - other`, floored at zero.
    pub fn minus(self, other: Usage) -> Usage {
        Usage {
            instances: self.instances.saturating_sub(other.instances),
            vcpus: self.vcpus.saturating_sub(other.vcpus),
            memory: self.memory.saturating_sub(other.memory),
            storage: self.storage.saturating_sub(other.storage),
        }
    }
}

/// Refuses `request` when `used + request` would exceed a non-zero quota.
pub fn check_quota(quotas: &Quotas, used: &Usage, request: &Usage) -> Result<(), AllocError> {
    let checks: [(&'static str, u64, u64, u64); 4] = [
        (
            "instances",
            quotas.instances.into(),
            used.instances.into(),
            request.instances.into(),
        ),
        (
            "vcpus",
            quotas.vcpus.into(),
            used.vcpus.into(),
            request.vcpus.into(),
        ),
        ("memory", quotas.memory, used.memory, request.memory),
        ("storage", quotas.storage, used.storage, request.storage),
    ];
    for (quota, limit, used, requested) in checks {
        if limit != 0 && requested > 0 && used.saturating_add(requested) > limit {
            return Err(AllocError::QuotaExceeded {
                quota,
                limit,
                used,
                requested,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(vcpus: u32, memory: u64, storage: u64) -> Usage {
        Usage {
            instances: 1,
            vcpus,
            memory,
            storage,
        }
    }

    #[test]
    fn zero_is_unlimited() {
        let q = Quotas::default();
        let huge = Usage {
            instances: u32::MAX,
            vcpus: u32::MAX,
            memory: u64::MAX,
            storage: u64::MAX,
        };
        check_quota(&q, &huge, &huge).expect("unlimited");
    }

    #[test]
    fn each_quota_is_enforced() {
        let q = Quotas {
            instances: 2,
            vcpus: 8,
            memory: 16,
            storage: 100,
        };
        let used = one(4, 8, 50);
        check_quota(&q, &used, &one(4, 8, 50)).expect("exactly at the limit");
        let err = check_quota(&q, &used.plus(one(1, 1, 1)), &one(1, 1, 1)).expect_err("count");
        assert_eq!(
            err,
            AllocError::QuotaExceeded {
                quota: "instances",
                limit: 2,
                used: 2,
                requested: 1
            }
        );
        let err = check_quota(&q, &used, &one(5, 1, 1)).expect_err("vcpus");
        assert!(matches!(
            err,
            AllocError::QuotaExceeded { quota: "vcpus", .. }
        ));
        let err = check_quota(&q, &used, &one(1, 9, 1)).expect_err("memory");
        assert!(matches!(
            err,
            AllocError::QuotaExceeded {
                quota: "memory",
                ..
            }
        ));
        let err = check_quota(&q, &used, &one(1, 1, 51)).expect_err("storage");
        assert!(matches!(
            err,
            AllocError::QuotaExceeded {
                quota: "storage",
                ..
            }
        ));
        assert!(err.to_string().contains("storage"));
    }

    #[test]
    fn usage_arithmetic_saturates() {
        let a = one(2, 4, 10);
        assert_eq!(a.plus(a).minus(a), a);
        assert_eq!(a.minus(a.plus(a)), Usage::default());
    }
}
