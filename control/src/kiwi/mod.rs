//! Kiwi, the region's DNS server, as a role of `kowabungad`: authoritative
//! for every project domain of the region (an `A`/`AAAA` record per
//! instance and the custom records, SOA and NS at each apex), everything
//! else forwarded to the recursors with a bounded cache; served over UDP
//! and TCP with hickory (`hickory-server`, `hickory-resolver`).
//!
//! | file | job |
//! |---|---|
//! | [`config`] | the `kiwi` section validated |
//! | [`compile`] | the section compiled into [`compile::Zones`], the immutable records and the authoritative answer |
//! | [`engine`] | the query path, the forwarder, UDP threads and the TCP server, the atomic swap |
//! | [`udp`] | batched UDP I/O (`recvmmsg`, `sendmmsg`) of the receive loops |
//! | [`role`] | [`role::KiwiRole`] and its entry in the daemon's registry |

pub mod compile;
pub mod config;
pub mod engine;
pub mod role;
pub mod udp;

#[cfg(test)]
mod tests;
