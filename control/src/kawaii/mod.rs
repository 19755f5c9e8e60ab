//! Kawaii, the project's Internet gateway, as a role of `kowabungad`.
//!
//! | file | job |
//! |---|---|
//! | [`config`] | the `kawaii` section after validation, and its validation |
//! | [`compile`] | the section compiled into the dataplane's typed [`kowabunga_dataplane::KawaiiConfig`] |
//! | [`engine`] | [`engine::KawaiiEngine`]: the dataplane behind a trait (real and fake) |
//! | [`backstop`] | the nftables forward chain that closes what the kernel would forward untranslated |
//! | [`role`] | [`role::KawaiiRole`]: start, attach, reload, sweep; its registry entry |

pub mod backstop;
pub mod compile;
pub mod config;
pub mod engine;
pub mod role;
