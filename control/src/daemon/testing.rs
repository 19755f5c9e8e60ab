//! Helpers of the daemon and role tests: temporary config files, and a
//! daemon running the Kawaii role over a fake dataplane.

use std::fs;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Notify;

use super::supervisor::Daemon;
use crate::config;
use crate::kawaii::engine::fake::FakeKawaii;
use crate::kawaii::role::KawaiiRole;
use crate::role::Role;

/// A config file in the temp directory, removed on drop.
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    pub(crate) fn new(tag: &str, text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("kowabungad-test-{tag}-{}.yaml", std::process::id()));
        fs::write(&path, text).expect("write config");
        TempFile(path)
    }
    pub(crate) fn write(&self, text: &str) {
        fs::write(&self.0, text).expect("write config");
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A Kawaii node with four interfaces, an ingress rule and a DNAT rule.
pub(crate) const GOOD: &str = r#"
node:
  zone: eu-west-a
  interfaces: {public: pub0, private: priv0, peerings: [peer0, peer1]}
kawaii:
  public_ips: [203.0.113.10]
  private_subnet: 10.0.0.0/25
  firewall:
    ingress: [{protocol: tcp, ports: "22"}]
  dnat: [{destination: 10.0.0.10, protocol: tcp, ports: "8080"}]
"#;

/// The Kawaii role type the tests run.
pub(crate) type FakeRole = KawaiiRole<FakeKawaii>;

/// A daemon started from [`GOOD`] with the Kawaii role over a fake.
pub(crate) fn started(tag: &str) -> (TempFile, Daemon) {
    let file = TempFile::new(tag, GOOD);
    let config = config::load(&file.0).expect("valid");
    let role = KawaiiRole::start(FakeKawaii::default(), &config).expect("apply");
    let roles: Vec<Box<dyn Role>> = vec![Box::new(role)];
    let daemon =
        Daemon::start(roles, file.0.clone(), config, Arc::new(Notify::new())).expect("start");
    (file, daemon)
}

/// The Kawaii role of a test daemon.
pub(crate) fn kawaii(d: &Daemon) -> &FakeRole {
    d.role::<FakeRole>().expect("kawaii")
}

/// The fake Kawaii dataplane of a test daemon.
pub(crate) fn kawaii_fake(d: &Daemon) -> &FakeKawaii {
    kawaii(d).engine()
}

/// The fake Kawaii dataplane of a test daemon, mutably.
pub(crate) fn kawaii_fake_mut(d: &mut Daemon) -> &mut FakeKawaii {
    d.role_mut::<FakeRole>().expect("kawaii").engine_mut()
}
