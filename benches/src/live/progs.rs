//! The bench's own XDP programs (`benches/bpf/*.c`, compiled by
//! `benches/build.rs`), loaded with aya: the generator, the sink and the
//! gateway baselines (pass, drop, the limit).

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aya::maps::{Array, DevMap, HashMap, MapData, PerCpuArray, PerCpuValues};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

use super::options::FlowSet;
use super::topology::{ifindex, InNetns, Topology, DPORT};
use super::verify::Seen;

static GEN_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/live_gen.o"));
static SINK_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/live_sink.o"));
static GW_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/live_gw.o"));

/// Generated frames: 64 bytes without FCS (Ethernet, IPv4, UDP, 22 bytes).
pub const FRAME_LEN: usize = 64;

fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let p: &mut Xdp = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing"))?
        .try_into()
        .with_context(|| format!("program {name} is not XDP"))?;
    Ok(p)
}

fn percpu_sum(ebpf: &Ebpf, map: &str) -> Result<u64> {
    let m: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(
        ebpf.map(map)
            .with_context(|| format!("map {map} missing"))?,
    )?;
    let v: PerCpuValues<u64> = m.get(&0, 0).with_context(|| format!("reading {map}"))?;
    Ok(v.iter().sum())
}

/// RFC 1071 checksum of `data` with an initial sum.
fn csum(data: &[u8], mut sum: u32) -> u16 {
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One generated frame: UDP `src:sport -> dst:DPORT`, valid checksums.
pub fn frame(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[0..6].copy_from_slice(&dmac);
    f[6..12].copy_from_slice(&smac);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = 14;
    let ulen = (FRAME_LEN - ip - 20) as u16;
    f[ip] = 0x45;
    f[ip + 2..ip + 4].copy_from_slice(&((FRAME_LEN - ip) as u16).to_be_bytes());
    f[ip + 8] = 64; // TTL
    f[ip + 9] = 17; // UDP
    f[ip + 12..ip + 16].copy_from_slice(&src.octets());
    f[ip + 16..ip + 20].copy_from_slice(&dst.octets());
    let c = csum(&f[ip..ip + 20], 0);
    f[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    let u = ip + 20;
    f[u..u + 2].copy_from_slice(&sport.to_be_bytes());
    f[u + 2..u + 4].copy_from_slice(&DPORT.to_be_bytes());
    f[u + 4..u + 6].copy_from_slice(&ulen.to_be_bytes());
    for (i, b) in f[u + 8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&ulen.to_be_bytes());
    let sum: u32 = pseudo
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    let c = match csum(&f[u..], sum) {
        0 => 0xffff,
        c => c,
    };
    f[u + 6..u + 8].copy_from_slice(&c.to_be_bytes());
    f
}

/// The sink's program on `s0`: counts the generator's frames, records one
/// in 64 by address.
pub struct Sink {
    ebpf: Ebpf,
}

impl Sink {
    /// Loads the sink and attaches it (native XDP) to the sink's interface.
    pub fn attach(topo: &Topology) -> Result<Self> {
        let mut ebpf = EbpfLoader::new()
            .override_global("sink_port", &DPORT, true)
            .load(SINK_OBJ)
            .context("loading live_sink.o")?;
        let p = xdp(&mut ebpf, "xdp_sink")?;
        p.load().context("loading xdp_sink")?;
        let idx = ifindex(&topo.sink, &topo.s0)?;
        let _in = InNetns::enter(&topo.sink)?;
        p.attach_to_if_index(idx, XdpMode::Driver)
            .context("attaching xdp_sink")?;
        Ok(Sink { ebpf })
    }

    /// Frames counted so far.
    pub fn count(&self) -> Result<u64> {
        percpu_sum(&self.ebpf, "sink_cnt")
    }

    /// Answer the generator's frames (`true`: the flows get established)
    /// or count and drop them (`false`, the measured state).
    pub fn set_reflect(&mut self, on: bool) -> Result<()> {
        let mut m: Array<&mut MapData, u32> =
            Array::try_from(self.ebpf.map_mut("sink_ctl").context("map sink_ctl")?)?;
        m.set(0, u32::from(on), 0).context("setting sink_ctl")?;
        Ok(())
    }

    /// Frames answered so far.
    pub fn replies(&self) -> Result<u64> {
        percpu_sum(&self.ebpf, "sink_replies")
    }

    /// What was recorded since the last call (the record is emptied).
    pub fn take_seen(&mut self) -> Result<Vec<Seen>> {
        let mut m: HashMap<&mut MapData, u64, u64> =
            HashMap::try_from(self.ebpf.map_mut("sink_seen").context("map sink_seen")?)?;
        let mut out = Vec::new();
        let keys: Vec<u64> = m.keys().filter_map(Result::ok).collect();
        for k in keys {
            let packets = m.get(&k, 0).unwrap_or(0);
            let b = k.to_ne_bytes();
            out.push(Seen {
                source: Ipv4Addr::new(b[0], b[1], b[2], b[3]),
                destination: Ipv4Addr::new(b[4], b[5], b[6], b[7]),
                packets,
            });
            let _ = m.remove(&k);
        }
        Ok(out)
    }
}

/// The gateway baselines: one of `xdp_pass`, `xdp_drop`, `xdp_fwd` on `g0`.
pub struct GwProgs {
    ebpf: Ebpf,
    g0: u32,
    attached: Option<(&'static str, XdpLinkId)>,
}

impl GwProgs {
    /// Loads the three programs; the limit redirects to `g1` with the sink's MAC.
    pub fn load(topo: &Topology) -> Result<Self> {
        let g1 = ifindex(&topo.gw, &topo.g1)?;
        let (smac, dmac) = topo.egress_macs();
        let mut ebpf = EbpfLoader::new()
            .override_global("out_ifindex", &g1, true)
            .override_global("src_mac", &smac[..], true)
            .override_global("dst_mac", &dmac[..], true)
            .load(GW_OBJ)
            .context("loading live_gw.o")?;
        for name in ["xdp_pass", "xdp_drop", "xdp_fwd"] {
            xdp(&mut ebpf, name)?
                .load()
                .with_context(|| format!("loading {name}"))?;
        }
        Ok(GwProgs {
            ebpf,
            g0: ifindex(&topo.gw, &topo.g0)?,
            attached: None,
        })
    }

    /// Attaches `name` to `g0` (native XDP), detaching what was there.
    pub fn attach(&mut self, topo: &Topology, name: &'static str) -> Result<()> {
        self.detach()?;
        let _in = InNetns::enter(&topo.gw)?;
        let id = xdp(&mut self.ebpf, name)?
            .attach_to_if_index(self.g0, XdpMode::Driver)
            .with_context(|| format!("attaching {name}"))?;
        self.attached = Some((name, id));
        Ok(())
    }

    /// Frames `xdp_drop` dropped so far (the generator calibration's count).
    pub fn drops(&self) -> Result<u64> {
        percpu_sum(&self.ebpf, "gw_drops")
    }

    /// Detaches the attached program, if any.
    pub fn detach(&mut self) -> Result<()> {
        if let Some((name, id)) = self.attached.take() {
            xdp(&mut self.ebpf, name)?
                .detach(id)
                .with_context(|| format!("detaching {name}"))?;
        }
        Ok(())
    }
}

/// What the generator sends: flows, template, loop size.
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    /// The flow set.
    pub flows: FlowSet,
    /// Vary the source address (load balancers) instead of the destination.
    pub vary_src: bool,
    /// First source address.
    pub src: Ipv4Addr,
    /// First destination address.
    pub dst: Ipv4Addr,
    /// First source port.
    pub sport: u16,
    /// Clones to the uplink per loop pass.
    pub amp: u32,
    /// Seed frames.
    pub seeds: u32,
}

/// A running generator; stopped on drop.
pub struct Generator {
    ebpf: Ebpf,
}

impl Generator {
    /// Loads the loop, attaches it in the client namespace and sends the
    /// seeds from the calling thread (whose CPU then runs the loop).
    pub fn start(topo: &Topology, cfg: &GenConfig) -> Result<Self> {
        let (mask, port_bits) = cfg.flows.mask_and_port_bits();
        let vary = u32::from(cfg.vary_src);
        let mut ebpf = EbpfLoader::new()
            .override_global("flow_mask", &mask, true)
            .override_global("port_bits", &port_bits, true)
            .override_global("vary_src", &vary, true)
            .map_max_entries("gen_dm", cfg.amp + 1)
            .load(GEN_OBJ)
            .context("loading live_gen.o")?;
        for name in ["xdp_gen", "xdp_loop", "xdp_tx"] {
            xdp(&mut ebpf, name)?
                .load()
                .with_context(|| format!("loading {name}"))?;
        }
        let (smac, dmac) = topo.client_macs();
        let tmpl = frame(smac, dmac, cfg.src, cfg.dst, cfg.sport);
        {
            let mut t: Array<&mut MapData, [u8; FRAME_LEN]> =
                Array::try_from(ebpf.map_mut("gen_tmpl").context("map gen_tmpl")?)?;
            t.set(0, tmpl, 0)?;
        }
        let c0 = ifindex(&topo.client, &topo.c0)?;
        let l0 = ifindex(&topo.client, &topo.l0)?;
        let l1 = ifindex(&topo.client, &topo.l1)?;
        let gen_fd = xdp(&mut ebpf, "xdp_gen")?.fd()?.try_clone()?;
        {
            // a devmap resolves ifindexes in the updating thread's namespace
            let _in = InNetns::enter(&topo.client)?;
            let mut dm: DevMap<&mut MapData> =
                DevMap::try_from(ebpf.map_mut("gen_dm").context("map gen_dm")?)?;
            for i in 0..cfg.amp {
                dm.set(i, c0, Some(&gen_fd), 0)
                    .context("devmap entry to the uplink")?;
            }
            dm.set(cfg.amp, l1, None, 0)
                .context("devmap entry back into the loop")?;
        }
        {
            let _in = InNetns::enter(&topo.client)?;
            xdp(&mut ebpf, "xdp_tx")?
                .attach_to_if_index(l0, XdpMode::Driver)
                .context("attaching xdp_tx")?;
            xdp(&mut ebpf, "xdp_loop")?
                .attach_to_if_index(l1, XdpMode::Driver)
                .context("attaching xdp_loop")?;
        }
        let mut g = Generator { ebpf };
        g.set_running(true)?;
        let _in = InNetns::enter(&topo.client)?;
        send_seeds(l0, &tmpl, cfg.seeds)?;
        Ok(g)
    }

    fn set_running(&mut self, on: bool) -> Result<()> {
        let mut r: Array<&mut MapData, u32> =
            Array::try_from(self.ebpf.map_mut("gen_run").context("map gen_run")?)?;
        r.set(0, u32::from(on), 0)?;
        Ok(())
    }

    /// Frames written so far.
    pub fn count(&self) -> Result<u64> {
        percpu_sum(&self.ebpf, "gen_cnt")
    }

    /// Stops the loop and lets it drain.
    pub fn stop(mut self) -> Result<()> {
        self.set_running(false)?;
        std::thread::sleep(Duration::from_millis(30));
        Ok(())
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        let _ = self.set_running(false);
    }
}

/// Sends `n` copies of `frame` out of interface `ifindex` (AF_PACKET).
fn send_seeds(ifindex: u32, frame: &[u8], n: u32) -> Result<()> {
    // SAFETY: plain socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2).
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = i32::try_from(ifindex)?;
    sll.sll_halen = 6;
    for _ in 0..n {
        // SAFETY: frame and sll are valid for the given lengths.
        let rc = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc != frame.len() as isize {
            bail!("sending a seed frame: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_frames_have_valid_checksums() {
        let f = frame(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(10, 210, 1, 2),
            Ipv4Addr::new(10, 211, 0, 1),
            10_000,
        );
        let p = etherparse::SlicedPacket::from_ethernet(&f).expect("parse");
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().source(), [10, 210, 1, 2]);
        assert_eq!(
            csum(&f[14..34], 0),
            0,
            "IPv4 header checksum must verify to 0"
        );
        let Some(etherparse::TransportSlice::Udp(udp)) = p.transport else {
            panic!("not UDP")
        };
        assert_eq!(udp.source_port(), 10_000);
        assert_eq!(udp.destination_port(), DPORT);
        let h = udp.to_header();
        let want = h
            .calc_checksum_ipv4(&ip.header().to_header(), udp.payload())
            .expect("checksum");
        assert_eq!(h.checksum, want);
    }
}
