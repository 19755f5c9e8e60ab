//! Tests of the Konvey role: start programs services then attaches, node
//! settings found or refused, reloads drain removed backends, probes drive
//! the rotation over real sockets, and a node running Kawaii and Konvey.

use super::*;
use crate::config;
use crate::daemon::node::IP_LOCAL_PORT_RANGE;
use crate::daemon::supervisor::Daemon;
use crate::daemon::testing::{TempFile, GOOD};
use crate::kawaii::engine::fake::FakeKawaii;
use crate::kawaii::role::KawaiiRole;
use crate::konvey::engine::fake::FakeKonvey;
use crate::konvey::health::State;
use kowabunga_dataplane::konvey::{Backend, Proto, ServiceKey};
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

const KONVEY: &str = r#"
node:
  zone: eu-west-a
  interfaces: {konvey: [lb0]}
  konvey:
    health: {interval_ms: 100, timeout_ms: 50}
konvey:
  vip: 10.0.0.100
  endpoints:
    - {name: web, protocol: tcp, port: 80, backend_port: 8080, backend_ips: [10.0.0.11, 10.0.0.12, 10.0.0.13]}
"#;

type FakeRole = KonveyRole<FakeKonvey>;

/// A /proc/sys with `ip_local_port_range`, removed on drop.
struct ProcSys(PathBuf);

impl ProcSys {
    fn new(tag: &str, range: &str) -> Self {
        let root =
            std::env::temp_dir().join(format!("kowabungad-proc-{tag}-{}", std::process::id()));
        fs::create_dir_all(root.join("net/ipv4")).expect("mkdir");
        fs::write(root.join(IP_LOCAL_PORT_RANGE), range).expect("write");
        ProcSys(root)
    }
    fn env(&self) -> NodeEnv {
        NodeEnv {
            proc_sys: self.0.clone(),
            interface_ipv4: |name| match name {
                "lb0" => vec![Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(10, 0, 0, 5)],
                "lb2" => vec![Ipv4Addr::new(10, 0, 0, 100)],
                _ => Vec::new(),
            },
        }
    }
}

impl Drop for ProcSys {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn web() -> ServiceKey {
    ServiceKey {
        vip: Ipv4Addr::new(10, 0, 0, 100),
        proto: Proto::Tcp,
        port: 80,
    }
}

fn be(last: u8) -> Backend {
    Backend {
        addr: Ipv4Addr::new(10, 0, 0, last),
        port: 8080,
    }
}

/// A daemon running only the Konvey role over a fake, from `yaml`.
fn start(tag: &str, yaml: &str, proc_sys: &ProcSys) -> (TempFile, anyhow::Result<Daemon>) {
    let file = TempFile::new(tag, yaml);
    let config = config::load(&file.0).expect("valid");
    let wake = Arc::new(Notify::new());
    let daemon = KonveyRole::start(FakeKonvey::default(), &config, proc_sys.env(), wake.clone())
        .and_then(|role| {
            let roles: Vec<Box<dyn Role>> = vec![Box::new(role)];
            Daemon::start(roles, file.0.clone(), config, wake)
        });
    (file, daemon)
}

fn role(d: &Daemon) -> &FakeRole {
    d.role::<FakeRole>().expect("konvey")
}

fn role_mut(d: &mut Daemon) -> &mut FakeRole {
    d.role_mut::<FakeRole>().expect("konvey")
}

fn engine(d: &Daemon) -> &FakeKonvey {
    role(d).balancer().engine()
}

#[test]
fn start_programs_services_then_attaches() {
    let proc_sys = ProcSys::new("start", "32768\t60999\n");
    let (_file, d) = start("kv-start", KONVEY, &proc_sys);
    let d = d.expect("start");
    assert!(d.role::<KawaiiRole<FakeKawaii>>().is_none());
    let fake = engine(&d);
    let config = fake.config.clone().expect("set_config");
    assert_eq!(
        config.sources,
        [Ipv4Addr::new(10, 0, 0, 5)],
        "first address of lb0 that is not the VIP"
    );
    assert_eq!((config.port_min, config.port_max), (1024, 32767));
    assert_eq!(fake.services[&web()], [be(11), be(12), be(13)]);
    assert_eq!(fake.attached, ["lb0"]);
    assert!(role(&d).poll_timeout().is_some());
    assert!(d.poll_timeout().is_some());
}

#[test]
fn start_refuses_a_port_range_overlapping_the_local_one() {
    let proc_sys = ProcSys::new("overlap", "20000 60999\n");
    let (_file, d) = start("kv-overlap", KONVEY, &proc_sys);
    let err = d.expect_err("overlap");
    assert_eq!(
        err.to_string(),
        "node.konvey.nat_port_range: \"1024-32767\" overlaps net.ipv4.ip_local_port_range (20000-60999), which the node's own connections (health checks) use; choose a range outside it"
    );
}

#[test]
fn start_needs_a_source_address() {
    let proc_sys = ProcSys::new("source", "32768 60999");
    let yaml = KONVEY.replace("konvey: [lb0]", "konvey: [lb1]");
    let (_file, d) = start("kv-source", &yaml, &proc_sys);
    assert_eq!(
        d.expect_err("no address").to_string(),
        r#"node.konvey.source_ip: not set, and interface "lb1" (node.interfaces.konvey[0]) has no IPv4 address besides the VIP"#
    );
    let only_vip = KONVEY.replace("konvey: [lb0]", "konvey: [lb2]");
    let (_file, d) = start("kv-source-vip", &only_vip, &proc_sys);
    assert!(d.is_err(), "the VIP is not a source address");
    let yaml = yaml.replace("    health:", "    source_ip: 10.0.0.6\n    health:");
    let (_file, d) = start("kv-source2", &yaml, &proc_sys);
    let d = d.expect("explicit source");
    assert_eq!(
        engine(&d).config.clone().expect("config").sources,
        [Ipv4Addr::new(10, 0, 0, 6)]
    );
}

#[test]
fn reload_drains_a_removed_backend_and_refuses_new_sections() {
    let proc_sys = ProcSys::new("reload", "32768 60999");
    let (file, d) = start("kv-reload", KONVEY, &proc_sys);
    let mut d = d.expect("start");
    file.write(&KONVEY.replace("10.0.0.12, ", ""));
    d.reload().expect("reload");
    assert_eq!(engine(&d).services[&web()], [be(11), be(13)]);
    role_mut(&mut d)
        .balancer_mut()
        .engine_mut()
        .flows
        .insert(be(12), 1);
    d.housekeeping();
    let status = role(&d).balancer().status();
    let drained = status
        .iter()
        .find(|s| s.backend == be(12))
        .expect("draining");
    assert_eq!((drained.state, drained.flows), (State::Draining, Some(1)));
    role_mut(&mut d).balancer_mut().engine_mut().flows.clear();
    d.housekeeping();
    assert!(role(&d).balancer().draining().next().is_none());

    // A reload that adds a Kawaii section needs a restart.
    let before = d.config().clone();
    file.write(&format!(
        "{}kawaii: {{public_ips: [203.0.113.10], private_subnet: 10.1.0.0/25}}\n",
        KONVEY.replace("konvey: [lb0]", "konvey: [lb0], public: p, private: q")
    ));
    let err = d.reload().expect_err("restart");
    assert!(
        err.to_string().starts_with("node.interfaces changed"),
        "{err}"
    );
    assert_eq!(d.config(), &before);
    // Same interfaces, a new section: the set of roles changes.
    let mut with_kawaii = config::parse_str(&format!(
        "{}kawaii: {{public_ips: [203.0.113.10], private_subnet: 10.1.0.0/25}}\n",
        KONVEY.replace("konvey: [lb0]", "konvey: [lb0], public: p, private: q")
    ))
    .expect("valid");
    with_kawaii.node.interfaces = d.config().node.interfaces.clone();
    let err = d.reload_with(with_kawaii).expect_err("restart");
    assert_eq!(
        err.to_string(),
        "kawaii changed: restart kowabungad to apply it"
    );
    assert_eq!(d.config(), &before);
}

/// The loop's role machinery (deadline, probes spawned by the role, results
/// waking the loop) against real listeners on loopback: a backend whose
/// listener closes leaves the rotation, and comes back when it listens
/// again. Bounded: at most 5 s of loop per phase.
#[test]
fn probes_drive_the_rotation_over_real_sockets() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listeners: Vec<std::net::TcpListener> = (11..=13)
            .map(|last| {
                std::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, last), 0)).expect("bind")
            })
            .collect();
        // One backend_port for all: bind the others on the first one's port.
        let port = listeners[0].local_addr().expect("addr").port();
        drop(listeners);
        let bind = |last: u8| {
            std::net::TcpListener::bind((Ipv4Addr::new(127, 0, 0, last), port))
                .expect("bind backend")
        };
        let mut up: Vec<Option<std::net::TcpListener>> =
            vec![Some(bind(11)), Some(bind(12)), Some(bind(13))];
        let yaml = format!(
            "node:\n  zone: a\n  interfaces: {{konvey: [lb0]}}\n  konvey:\n    source_ip: 127.0.0.5\n    health: {{interval_ms: 50, timeout_ms: 40, rise: 2, fall: 2}}\nkonvey:\n  vip: 10.0.0.100\n  endpoints:\n    - {{name: web, protocol: tcp, port: 80, backend_port: {port}, backend_ips: [127.0.0.11, 127.0.0.12, 127.0.0.13]}}\n"
        );
        let proc_sys = ProcSys::new("probes", "32768 60999");
        let (_file, d) = start("kv-probes", &yaml, &proc_sys);
        let mut d = d.expect("start");
        let key = ServiceKey {
            vip: Ipv4Addr::new(10, 0, 0, 100),
            proto: Proto::Tcp,
            port: 80,
        };
        let backend = |last: u8| Backend {
            addr: Ipv4Addr::new(127, 0, 0, last),
            port,
        };

        // Runs the loop's poll arms until the programmed rotation is `want`.
        async fn run_until(d: &mut Daemon, key: ServiceKey, want: &[Backend]) -> Duration {
            let started = Instant::now();
            let wake = d.wake();
            while started.elapsed() < Duration::from_secs(5) {
                if engine(d).services.get(&key).map(Vec::as_slice) == Some(want) {
                    return started.elapsed();
                }
                let deadline = crate::daemon::main_loop::next_deadline(d);
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => d.poll(Instant::now()),
                    _ = wake.notified() => d.poll(Instant::now()),
                }
            }
            panic!("rotation never became {want:?}: {:?}", engine(d).services);
        }

        let all = [backend(11), backend(12), backend(13)];
        run_until(&mut d, key, &all).await;
        up[1] = None; // 127.0.0.12 stops listening: refused
        let took = run_until(&mut d, key, &[backend(11), backend(13)]).await;
        assert!(took < Duration::from_secs(2), "out after {took:?}");
        up[1] = Some(bind(12));
        run_until(&mut d, key, &all).await;
        let status = role(&d).balancer().status();
        assert!(status.iter().all(|s| s.state == State::Up), "{status:?}");
        drop(up);
    });
}

#[test]
fn one_node_runs_kawaii_and_konvey() {
    let proc_sys = ProcSys::new("both", "32768 60999");
    let yaml = format!(
        "{}{}",
        GOOD.replace(
            "peerings: [peer0, peer1]}",
            "peerings: [peer0, peer1], konvey: [lb0]}"
        ),
        KONVEY
            .split("konvey:\n  vip")
            .nth(1)
            .map(|rest| format!("konvey:\n  vip{rest}"))
            .expect("konvey section")
    );
    let file = TempFile::new("kv-both", &yaml);
    let config = config::load(&file.0).expect("valid");
    let names: Vec<&str> = crate::daemon::registry::wanted(&config)
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["kawaii", "konvey"]);
    let wake = Arc::new(Notify::new());
    let kawaii = KawaiiRole::start(FakeKawaii::default(), &config).expect("kawaii");
    let konvey = KonveyRole::start(FakeKonvey::default(), &config, proc_sys.env(), wake.clone())
        .expect("konvey");
    let roles: Vec<Box<dyn Role>> = vec![Box::new(kawaii), Box::new(konvey)];
    let mut d = Daemon::start(roles, file.0.clone(), config, wake).expect("start");
    let kawaii = |d: &Daemon| {
        d.role::<KawaiiRole<FakeKawaii>>()
            .expect("kawaii")
            .engine()
            .applied
            .len()
    };
    assert_eq!(kawaii(&d), 1);
    assert_eq!(
        d.role::<KawaiiRole<FakeKawaii>>()
            .expect("kawaii")
            .engine()
            .attached
            .len(),
        4
    );
    assert_eq!(engine(&d).attached, ["lb0"]);
    assert_eq!(engine(&d).services[&web()].len(), 3);
    // A reload reaches both.
    file.write(
        &yaml
            .replace("10.0.0.12, ", "")
            .replace("\"8080\"", "\"8081\""),
    );
    d.reload().expect("reload");
    assert_eq!(
        d.role::<KawaiiRole<FakeKawaii>>().expect("kawaii").bank(),
        1
    );
    assert_eq!(engine(&d).services[&web()], [be(11), be(13)]);
    assert_eq!(kawaii(&d), 2);
    d.sweep(7);
    assert_eq!(
        d.role::<KawaiiRole<FakeKawaii>>()
            .expect("kawaii")
            .engine()
            .sweeps,
        [7]
    );
    assert_eq!(engine(&d).sweeps, [7]);
}

#[test]
fn node_settings_only_with_a_konvey_section() {
    // Kawaii-only: no Konvey settings, no Konvey interfaces.
    let config = config::parse_str(GOOD).expect("valid");
    assert_eq!(konvey_config(&config, &NodeEnv::system()), Ok(None));
    assert!(interfaces(&config).is_empty());
    let config = config::parse_str(KONVEY).expect("valid");
    let err = KawaiiRole::start(FakeKawaii::default(), &config).expect_err("no kawaii section");
    assert_eq!(err.to_string(), "no kawaii section");
}
