//! The roles a node can run, in start order: the one place that lists
//! them. A new role is a new folder with a `role.rs` exporting its
//! [`RoleSpec`], plus one line in [`ROLES`].

use std::sync::Arc;

use tokio::sync::Notify;

use super::node::NodeEnv;
use crate::config::ValidConfig;
use crate::role::Role;

/// What the registry passes to a role it builds.
#[derive(Debug, Clone)]
pub struct Context {
    /// The node the daemon runs on.
    pub env: NodeEnv,
    /// Wakes the supervisor loop (a role's task finished: call
    /// [`Role::poll`]).
    pub wake: Arc<Notify>,
}

/// How the daemon finds, builds and removes one role.
#[derive(Debug, Clone, Copy)]
pub struct RoleSpec {
    /// The role's name.
    pub name: &'static str,
    /// The config field whose presence asks for the role (named by
    /// "restart to apply" errors).
    pub section: &'static str,
    /// Whether a configuration asks for this role.
    pub wanted: fn(&ValidConfig) -> bool,
    /// The interfaces the role attaches to: field path, name.
    pub interfaces: fn(&ValidConfig) -> Vec<(String, String)>,
    /// Loads the role's engine and applies its section (nothing attached).
    pub load: fn(&ValidConfig, &Context) -> anyhow::Result<Box<dyn Role>>,
    /// `--detach`: removes what the role left in the kernel.
    pub detach: fn(&ValidConfig) -> anyhow::Result<()>,
}

impl RoleSpec {
    /// A role whose config field is its name (`kawaii`, `konvey`).
    pub const fn new(
        name: &'static str,
        wanted: fn(&ValidConfig) -> bool,
        interfaces: fn(&ValidConfig) -> Vec<(String, String)>,
        load: fn(&ValidConfig, &Context) -> anyhow::Result<Box<dyn Role>>,
        detach: fn(&ValidConfig) -> anyhow::Result<()>,
    ) -> Self {
        RoleSpec {
            name,
            section: name,
            wanted,
            interfaces,
            load,
            detach,
        }
    }

    /// The same role asked for by another config field (`node.vrrp`).
    pub const fn with_section(self, section: &'static str) -> Self {
        RoleSpec { section, ..self }
    }
}

/// Every role, in start order: dataplanes first, VIP failover once they
/// run. Reloads follow the same order.
pub const ROLES: &[RoleSpec] = &[
    crate::kawaii::role::SPEC,
    crate::konvey::role::SPEC,
    crate::ipsec::role::SPEC,
    crate::vrrp::role::SPEC,
    crate::kiwi::role::SPEC,
];

/// The roles `config` asks for.
pub fn wanted(config: &ValidConfig) -> impl Iterator<Item = &'static RoleSpec> + '_ {
    ROLES.iter().filter(move |spec| (spec.wanted)(config))
}

/// Every interface the roles of `config` attach to: field path, name.
pub fn interfaces(config: &ValidConfig) -> Vec<(String, String)> {
    wanted(config)
        .flat_map(|spec| (spec.interfaces)(config))
        .collect()
}

/// Fails with one line naming the first configured interface that does not
/// exist in this network namespace.
///
/// # Errors
/// `<field>: interface "<name>" does not exist`.
pub fn check_interfaces(config: &ValidConfig) -> anyhow::Result<()> {
    for (field, name) in interfaces(config) {
        if nix::net::if_::if_nametoindex(name.as_str()).is_err() {
            anyhow::bail!("{field}: interface {name:?} does not exist");
        }
    }
    Ok(())
}

/// Loads every role `config` asks for, in order.
///
/// # Errors
/// The first role that cannot load or apply its section.
pub fn load(config: &ValidConfig, ctx: &Context) -> anyhow::Result<Vec<Box<dyn Role>>> {
    wanted(config)
        .map(|spec| (spec.load)(config, ctx))
        .collect()
}

/// `--detach`: every role of `config`, last started first.
///
/// # Errors
/// The first role that could not remove its state.
pub fn detach(config: &ValidConfig) -> anyhow::Result<()> {
    let specs: Vec<_> = wanted(config).collect();
    for spec in specs.into_iter().rev() {
        (spec.detach)(config)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    #[test]
    fn a_config_asks_for_the_roles_of_its_sections() {
        let names = |yaml: &str| -> Vec<&str> {
            let config = parse_str(yaml).expect("valid");
            wanted(&config).map(|s| s.name).collect()
        };
        let kawaii = "node: {zone: a, interfaces: {public: p, private: q, peerings: [r]}}\nkawaii: {public_ips: [203.0.113.10], private_subnet: 10.0.0.0/25}\n";
        assert_eq!(names(kawaii), ["kawaii"]);
        let konvey = "node: {zone: a, interfaces: {konvey: [lb0]}}\nkonvey: {vip: 10.0.0.100, endpoints: []}\n";
        assert_eq!(names(konvey), ["konvey"]);
        let both = "node: {zone: a, interfaces: {public: p, private: q, konvey: [lb0]}, vrrp: {instances: [{vrid: 51, interface: p, zone: a, virtual_ips: [203.0.113.10/24]}]}}\nkawaii: {public_ips: [203.0.113.10], private_subnet: 10.0.0.0/25}\nkonvey: {vip: 10.0.0.100, endpoints: []}\n";
        assert_eq!(names(both), ["kawaii", "konvey", "vrrp"]);
        let config = parse_str(both).expect("valid");
        let ifaces: Vec<String> = interfaces(&config)
            .into_iter()
            .map(|(f, n)| format!("{f}={n}"))
            .collect();
        assert_eq!(
            ifaces,
            [
                "node.interfaces.public=p",
                "node.interfaces.private=q",
                "node.interfaces.konvey[0]=lb0"
            ]
        );
        let config = parse_str(kawaii).expect("valid");
        assert_eq!(interfaces(&config).len(), 3);
        let err = check_interfaces(&config).expect_err("no such interface");
        assert_eq!(
            err.to_string(),
            r#"node.interfaces.public: interface "p" does not exist"#
        );
    }
}
