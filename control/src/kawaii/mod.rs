//! Kawaii, the project's Internet gateway, as a role of `kowabungad`.
//!
//! | file | job |
//! |---|---|
//! | [`config`] | the `kawaii` section after validation, and its validation |
//! | [`compile`] | the section compiled into the dataplane's typed [`kowabunga_dataplane::KawaiiConfig`] |
//! | [`engine`] | [`engine::KawaiiEngine`]: the dataplane behind a trait (real and fake) |
//! | [`role`] | [`role::KawaiiRole`]: start, attach, reload, sweep; its registry entry |

pub mod compile;
pub mod config;
pub mod engine;
pub mod role;
