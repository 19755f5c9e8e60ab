//! The thin I/O driver: raw IP sockets (protocol 112) joined to 224.0.0.18 on each
//! instance's interface, gratuitous ARP over `AF_PACKET`, VIPs through
//! [`VipOwner`], all run by one dedicated thread around the sans-IO [`Machine`]s.
//!
//! Timing: the thread sleeps in `ppoll(2)` until the earliest machine deadline
//! (nanosecond timeout, absolute deadlines kept by the machines), raises itself to
//! `SCHED_RR` when allowed (like keepalived's `vrrp_rt_priority`), and before acting
//! on any timer it drains every socket, so an advert that arrived while the thread
//! was late is taken into account and a late wake-up never turns a healthy backup
//! into a second master.
//!
//! Start-up: VIPs of an instance found on its interface were left by a run
//! killed while master; [`Engine::start`] removes them before the thread
//! starts (a backup may hold them by now) and the machine starts as backup
//! listening for a master during its resume window (see
//! [`Machine::start`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::config::{Handover, Instance};
use super::machine::{Action, Machine, MachineConfig, State};
use super::packet::{Advert, IPPROTO_VRRP, MCAST_V4};
pub use super::socket::DriverError;
use super::socket::{hw_addr, ifindex, io_err, setsockopt, socket};
pub use super::status::{DriverCounters, InstanceStatus};
use super::vip::VipOwner;

/// Default `SCHED_RR` priority of the VRRP thread.
pub const DEFAULT_RT_PRIORITY: i32 = 10;
/// How often a master checks that its VIPs are still on the interface.
pub const RECONCILE_PERIOD: Duration = Duration::from_secs(1);

/// Engine tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// `SCHED_RR` priority of the VRRP thread; `None` keeps the normal scheduler.
    pub realtime_priority: Option<i32>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            realtime_priority: Some(DEFAULT_RT_PRIORITY),
        }
    }
}

enum Command {
    Shutdown,
}

/// The running VRRP engine: one thread for all instances. Dropping it stops it
/// gracefully (priority 0 adverts, VIPs removed).
#[derive(Debug)]
pub struct Engine {
    thread: Option<JoinHandle<()>>,
    commands: Sender<Command>,
    wake: OwnedFd,
    status: Arc<Mutex<Vec<InstanceStatus>>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shutdown")
    }
}

struct Runtime {
    inst: Instance,
    ifindex: u32,
    local: Ipv4Addr,
    sock: OwnedFd,
    packet: OwnedFd,
    mac: [u8; 6],
    machine: Machine,
    counters: DriverCounters,
    ip_id: u16,
}

impl Runtime {
    fn open(inst: Instance, vips: &mut VipOwner) -> Result<(Self, bool), DriverError> {
        if inst.is_ipv6() {
            return Err(DriverError::Ipv6(inst.name));
        }
        let Some(ifindex) = ifindex(&inst.interface) else {
            return Err(DriverError::NoInterface {
                instance: inst.name,
                interface: inst.interface,
            });
        };
        let present = vips.present(ifindex)?;
        let is_vip = |a: &IpAddr| inst.virtual_ips.iter().any(|v| v.addr == *a);
        let Some(local) = present.iter().find_map(|a| match a {
            IpAddr::V4(v4) if !is_vip(a) => Some(*v4),
            _ => None,
        }) else {
            return Err(DriverError::NoAddress {
                instance: inst.name,
                interface: inst.interface,
            });
        };
        let left = inst.virtual_ips.iter().any(|v| present.contains(&v.addr));

        let sock = socket(
            libc::AF_INET,
            libc::SOCK_RAW,
            i32::from(IPPROTO_VRRP),
            "raw socket (needs CAP_NET_RAW)",
        )?;
        let mut name = [0u8; 16];
        name[..inst.interface.len()].copy_from_slice(inst.interface.as_bytes());
        setsockopt(
            &sock,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            &name,
            "SO_BINDTODEVICE",
        )?;
        setsockopt(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_HDRINCL,
            &1i32,
            "IP_HDRINCL",
        )?;
        setsockopt(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_LOOP,
            &0i32,
            "IP_MULTICAST_LOOP",
        )?;
        setsockopt(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_TTL,
            &255i32,
            "IP_MULTICAST_TTL",
        )?;
        let mreq = libc::ip_mreqn {
            imr_multiaddr: libc::in_addr {
                s_addr: u32::from_ne_bytes(MCAST_V4.octets()),
            },
            imr_address: libc::in_addr { s_addr: 0 },
            imr_ifindex: ifindex as i32,
        };
        setsockopt(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &mreq,
            "IP_MULTICAST_IF",
        )?;
        setsockopt(
            &sock,
            libc::IPPROTO_IP,
            libc::IP_ADD_MEMBERSHIP,
            &mreq,
            "IP_ADD_MEMBERSHIP 224.0.0.18",
        )?;

        let packet = socket(libc::AF_PACKET, libc::SOCK_RAW, 0, "AF_PACKET socket")?;
        let mac = hw_addr(&packet, &inst.interface)?;
        let machine = Machine::new(MachineConfig {
            vrid: inst.vrid,
            priority: inst.priority,
            advert_interval_cs: inst.advert_interval_cs,
            preempt: inst.preempt,
            addresses: inst.virtual_ips.iter().map(|v| v.addr).collect(),
            local_addr: IpAddr::V4(local),
            garp_count: inst.garp_count,
            garp_delay: inst.garp_delay,
            immediate_handover: inst.priority_zero_handover == Handover::Immediate,
        });
        Ok((
            Runtime {
                inst,
                ifindex,
                local,
                sock,
                packet,
                mac,
                machine,
                counters: DriverCounters::default(),
                ip_id: 0,
            },
            left,
        ))
    }

    /// Removes this instance's VIPs left on the interface by a previous run
    /// (killed while master): a backup may hold them by now. Returns how many
    /// were removed.
    fn remove_leftovers(&mut self, vips: &mut VipOwner) -> Result<usize, DriverError> {
        let present = vips.present(self.ifindex)?;
        let mut removed = 0;
        for v in self.inst.virtual_ips.clone() {
            if present.contains(&v.addr) {
                vips.remove(self.ifindex, &v)?;
                removed += 1;
                tracing::info!(instance = %self.inst.name, interface = %self.inst.interface, vip = %v,
                    "VIP left by a previous run removed: it comes back only if this node becomes master");
            }
        }
        Ok(removed)
    }

    fn status(&self) -> InstanceStatus {
        InstanceStatus {
            name: self.inst.name.clone(),
            vrid: self.inst.vrid,
            interface: self.inst.interface.clone(),
            state: self.machine.state(),
            priority: self.inst.priority,
            master: self.machine.master(),
            counters: self.machine.counters(),
            driver: self.counters,
        }
    }

    /// Reads every pending packet and feeds valid adverts of our VRID to the machine.
    fn drain(&mut self) {
        let mut buf = [0u8; 2048];
        for _ in 0..1024 {
            // SAFETY: `buf` is a valid writable buffer; non-blocking socket.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n <= 0 {
                return;
            }
            let pkt = &buf[..n as usize];
            self.counters.received += 1;
            let now = Instant::now();
            self.handle_packet(now, pkt);
        }
    }

    fn handle_packet(&mut self, now: Instant, pkt: &[u8]) {
        if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != IPPROTO_VRRP {
            self.counters.bad_ip += 1;
            return;
        }
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]])).min(pkt.len());
        if ihl < 20 || total < ihl {
            self.counters.bad_ip += 1;
            return;
        }
        let src = IpAddr::V4(Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]));
        let dst = IpAddr::V4(Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]));
        if src == IpAddr::V4(self.local) {
            self.counters.own += 1;
            return;
        }
        if pkt[8] != 255 {
            self.counters.bad_ttl += 1;
            return;
        }
        let payload = &pkt[ihl..total];
        if payload.len() >= 2 && payload[1] != self.inst.vrid {
            self.counters.other_vrid += 1;
            return;
        }
        match Advert::decode(payload, src, dst, self.inst.checksum) {
            Ok(advert) => self.machine.handle_advert(now, src, &advert),
            Err(e) => {
                tracing::debug!(instance = %self.inst.name, %src, "advert refused: {e}");
                self.counters.count(e);
            }
        }
    }

    fn send_advert(&mut self, advert: &Advert) {
        let dst = IpAddr::V4(MCAST_V4);
        let body = match advert.encode(IpAddr::V4(self.local), dst, self.inst.checksum) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(instance = %self.inst.name, "advert not encodable: {e}");
                self.counters.send_errors += 1;
                return;
            }
        };
        self.ip_id = self.ip_id.wrapping_add(1).max(1);
        let mut pkt = Vec::with_capacity(20 + body.len());
        let total = (20 + body.len()) as u16;
        pkt.extend_from_slice(&[0x45, 0xc0]);
        pkt.extend_from_slice(&total.to_be_bytes());
        pkt.extend_from_slice(&self.ip_id.to_be_bytes());
        pkt.extend_from_slice(&[0, 0, 255, IPPROTO_VRRP, 0, 0]);
        pkt.extend_from_slice(&self.local.octets());
        pkt.extend_from_slice(&MCAST_V4.octets());
        pkt.extend_from_slice(&body);
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(MCAST_V4.octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: valid buffer and sockaddr_in of the given sizes.
        let rc = unsafe {
            libc::sendto(
                self.sock.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                std::ptr::from_ref(&sa).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            self.counters.send_errors += 1;
            tracing::warn!(instance = %self.inst.name, "sending advert: {}", io::Error::last_os_error());
        }
    }

    fn announce(&mut self) {
        for vip in &self.inst.virtual_ips {
            let IpAddr::V4(a) = vip.addr else { continue };
            let mut f = Vec::with_capacity(42);
            f.extend_from_slice(&[0xff; 6]);
            f.extend_from_slice(&self.mac);
            f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
            f.extend_from_slice(&self.mac);
            f.extend_from_slice(&a.octets());
            f.extend_from_slice(&[0xff; 6]);
            f.extend_from_slice(&a.octets());
            // SAFETY: a zeroed sockaddr_ll is valid; fields set below.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = 0x0806u16.to_be();
            sll.sll_ifindex = self.ifindex as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
            // SAFETY: valid frame and sockaddr_ll of the given sizes.
            let rc = unsafe {
                libc::sendto(
                    self.packet.as_raw_fd(),
                    f.as_ptr().cast(),
                    f.len(),
                    0,
                    std::ptr::from_ref(&sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc < 0 {
                self.counters.send_errors += 1;
            } else {
                self.counters.garp_sent += 1;
            }
        }
    }

    /// While master, puts back VIPs someone removed (and announces them).
    fn reconcile(&mut self, vips: &mut VipOwner) {
        if self.machine.state() != State::Master {
            return;
        }
        let present = match vips.present(self.ifindex) {
            Ok(p) => p,
            Err(e) => {
                self.counters.vip_errors += 1;
                tracing::warn!(instance = %self.inst.name, "listing addresses: {e}");
                return;
            }
        };
        let missing: Vec<_> = self
            .inst
            .virtual_ips
            .iter()
            .filter(|v| !present.contains(&v.addr))
            .copied()
            .collect();
        for v in &missing {
            tracing::warn!(instance = %self.inst.name, vip = %v, "VIP removed behind our back: adding it again");
            match vips.add(self.ifindex, v) {
                Ok(()) => self.counters.vip_readded += 1,
                Err(e) => {
                    self.counters.vip_errors += 1;
                    tracing::error!(instance = %self.inst.name, "adding VIP: {e}");
                }
            }
        }
        if !missing.is_empty() {
            self.announce();
        }
    }

    fn run_actions(&mut self, vips: &mut VipOwner) {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::SendAdvert(a) => self.send_advert(&a),
                Action::AddAddresses => {
                    for v in self.inst.virtual_ips.clone() {
                        if let Err(e) = vips.add(self.ifindex, &v) {
                            self.counters.vip_errors += 1;
                            tracing::error!(instance = %self.inst.name, "adding VIP: {e}");
                        }
                    }
                }
                Action::RemoveAddresses => {
                    for v in self.inst.virtual_ips.clone() {
                        if let Err(e) = vips.remove(self.ifindex, &v) {
                            self.counters.vip_errors += 1;
                            tracing::error!(instance = %self.inst.name, "removing VIP: {e}");
                        }
                    }
                }
                Action::Announce => self.announce(),
                Action::Transition { from, to, reason } => {
                    tracing::info!(instance = %self.inst.name, vrid = self.inst.vrid, %from, %to, reason, "vrrp transition");
                }
            }
        }
    }
}

fn set_realtime(prio: i32) {
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: pid 0 is the calling thread; `param` is valid.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) };
    if rc != 0 {
        tracing::warn!(
            "vrrp: SCHED_RR {prio} refused ({}), keeping the normal scheduler",
            io::Error::last_os_error()
        );
    }
}

impl Engine {
    /// Opens the sockets of every instance (errors surface here), then starts the
    /// engine thread. Must be called in the network namespace of the interfaces.
    pub fn start(instances: Vec<Instance>, opts: EngineOptions) -> Result<Engine, DriverError> {
        let mut vips = VipOwner::new()?;
        let mut runtimes = Vec::with_capacity(instances.len());
        for inst in instances {
            runtimes.push(Runtime::open(inst, &mut vips)?);
        }
        // Before anything else (RFC 9568: a router starts in Initialize and
        // holds the addresses only as master): a run killed while master left
        // its VIPs, and a backup may have taken them over since.
        for (rt, left) in &mut runtimes {
            if *left {
                rt.remove_leftovers(&mut vips)?;
            }
        }
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io_err("pipe2"));
        }
        // SAFETY: fresh descriptors from pipe2, owned here.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let status = Arc::new(Mutex::new(
            runtimes.iter().map(|(r, _)| r.status()).collect(),
        ));
        let (tx, rx) = mpsc::channel();
        let st = Arc::clone(&status);
        let thread = std::thread::Builder::new()
            .name("vrrp".into())
            .spawn(move || run(runtimes, vips, rd, rx, st, opts))
            .map_err(DriverError::Thread)?;
        Ok(Engine {
            thread: Some(thread),
            commands: tx,
            wake: wr,
            status,
        })
    }

    /// A snapshot of every instance.
    pub fn status(&self) -> Vec<InstanceStatus> {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops gracefully: masters send priority 0 and remove their VIPs.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        // SAFETY: writes one byte from a valid buffer to our pipe.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    mut rts: Vec<(Runtime, bool)>,
    mut vips: VipOwner,
    wake: OwnedFd,
    commands: Receiver<Command>,
    status: Arc<Mutex<Vec<InstanceStatus>>>,
    opts: EngineOptions,
) {
    if let Some(p) = opts.realtime_priority {
        set_realtime(p);
    }
    let now = Instant::now();
    for (rt, present) in &mut rts {
        rt.machine.start(now, *present);
        rt.run_actions(&mut vips);
    }
    let mut rts: Vec<Runtime> = rts.into_iter().map(|(r, _)| r).collect();
    let mut pfds: Vec<libc::pollfd> = std::iter::once(wake.as_raw_fd())
        .chain(rts.iter().map(|r| r.sock.as_raw_fd()))
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let mut reconcile_at = Instant::now() + RECONCILE_PERIOD;
    loop {
        let next = rts
            .iter()
            .filter_map(|r| r.machine.poll_timeout())
            .chain(std::iter::once(reconcile_at))
            .min();
        let wait = next.map(|d| d.saturating_duration_since(Instant::now()));
        let ts = wait.map(|w| libc::timespec {
            tv_sec: w.as_secs().min(3600) as libc::time_t,
            tv_nsec: libc::c_long::from(w.subsec_nanos() as i32),
        });
        let tsp = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
        // SAFETY: `pfds` is a valid array of pollfd; `tsp` null or a valid timespec.
        let rc = unsafe {
            libc::ppoll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                tsp,
                std::ptr::null(),
            )
        };
        if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            tracing::error!("vrrp ppoll: {}", io::Error::last_os_error());
            std::thread::sleep(Duration::from_millis(10));
        }
        if pfds[0].revents != 0 {
            let mut b = [0u8; 16];
            // SAFETY: reads into a valid buffer from our non-blocking pipe.
            let _ = unsafe { libc::read(wake.as_raw_fd(), b.as_mut_ptr().cast(), b.len()) };
            if matches!(
                commands.try_recv(),
                Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected)
            ) {
                break;
            }
        }
        // Adverts first (even when only a timer fired): a late wake-up must see them.
        for rt in &mut rts {
            rt.drain();
        }
        let now = Instant::now();
        for rt in &mut rts {
            if rt.machine.poll_timeout().is_some_and(|d| d <= now) {
                rt.machine.handle_timeout(now);
            }
            rt.run_actions(&mut vips);
        }
        if now >= reconcile_at {
            for rt in &mut rts {
                rt.reconcile(&mut vips);
            }
            reconcile_at = now + RECONCILE_PERIOD;
        }
        let snapshot: Vec<InstanceStatus> = rts.iter().map(Runtime::status).collect();
        *status.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }
    let now = Instant::now();
    for rt in &mut rts {
        rt.machine.shutdown(now);
        rt.run_actions(&mut vips);
    }
    if let Err(e) = vips.remove_all() {
        tracing::error!("vrrp: removing VIPs at shutdown: {e}");
    }
    let snapshot: Vec<InstanceStatus> = rts.iter().map(Runtime::status).collect();
    *status.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
}
