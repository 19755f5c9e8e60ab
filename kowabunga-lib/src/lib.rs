//! # kowabunga
//!
//! Kowabunga's resource model and VM/storage provisioning, as a library that
//! Rust services embed.
//!
//! * [`model`]: the resources of the user guide (projects, quotas, Kompute,
//!   volumes, templates, DNS records, Kylo, Kawaii and Konvey specs) with
//!   serde and validation errors that name the field.
//! * [`alloc`]: pure allocation rules (subnets, gateways, instance addresses,
//!   MACs, VRIDs, quotas, placement, Multi-Zone expansion).
//! * [`hypervisor`], [`storage`], [`kylo`]: small backend traits chosen at
//!   runtime, with libvirt (feature `libvirt`), local qcow2 (always) and Ceph
//!   (feature `ceph`) implementations.
//! * [`cloud`]: the async facade ([`Cloud`]) that ties them together.
//!
//! Built with `--no-default-features`, the crate needs no C library: the model
//! and the allocation rules are always available.

pub mod alloc;
pub mod cloud;
pub mod cloudinit;
pub mod hypervisor;
pub mod kylo;
pub mod model;
mod process;
pub mod storage;

pub use cloud::{Cloud, CloudConfig, CloudError, CloudEvent};
