//! Which domain type this host can really run: `kvm` or `qemu` (TCG).
//!
//! A `/dev/kvm` that opens is not enough: on some hosts (nested PVM, as on
//! the project's CI machines) KVM creates VMs and even runs simple code, but
//! stock guest kernels hang. The probe therefore *tries*:
//!
//! 1. `/dev/kvm` opens and speaks API version 12;
//! 2. a VM and a vCPU are created, the vCPU is put straight into 64-bit long
//!    mode with identity-mapped paging, runs a store and `hlt`, and KVM
//!    reports `KVM_EXIT_HLT` with the store visible in guest memory (bounded
//!    wait);
//! 3. `KVM_GET_SUPPORTED_CPUID` offers the baseline every x86-64 guest CPU
//!    model asks for (SSE3, SSSE3, CX16, long mode). Restricted KVMs such as
//!    PVM hide SSE3 while the host CPU has it; QEMU then starts the guest
//!    without it and stock kernels do not boot.
//!
//! Any failure means TCG. `KOWABUNGA_DOMAIN_TYPE=kvm|qemu` overrides the
//! probe (see [`detect_domain_type`]).

use std::time::Duration;

use super::DomainType;

/// Environment variable that overrides the probe: `kvm` or `qemu`.
pub const DOMAIN_TYPE_ENV: &str = "KOWABUNGA_DOMAIN_TYPE";

/// Result of [`probe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmProbe {
    /// Whether KVM can run stock guests here.
    pub usable: bool,
    /// What was found, in words (the first failing step).
    pub reason: String,
}

/// The domain type to use: [`DOMAIN_TYPE_ENV`] when set to `kvm` or `qemu`,
/// else `kvm` when [`probe`] says KVM is usable, else `qemu`.
pub fn detect_domain_type() -> DomainType {
    match std::env::var(DOMAIN_TYPE_ENV).as_deref() {
        Ok("kvm") => return DomainType::Kvm,
        Ok("qemu") => return DomainType::Qemu,
        Ok(other) => {
            tracing::warn!("{DOMAIN_TYPE_ENV}={other:?} is neither kvm nor qemu; probing")
        }
        Err(_) => {}
    }
    let p = probe();
    if p.usable {
        DomainType::Kvm
    } else {
        tracing::info!("KVM not usable ({}), guests run under TCG", p.reason);
        DomainType::Qemu
    }
}

/// Tries KVM for real (see the module documentation). Takes a few
/// milliseconds when KVM works; bounded by a 3 s wait otherwise.
pub fn probe() -> KvmProbe {
    probe_device("/dev/kvm", Duration::from_secs(3))
}

fn no(reason: impl Into<String>) -> KvmProbe {
    KvmProbe {
        usable: false,
        reason: reason.into(),
    }
}

// ioctl numbers from <linux/kvm.h> (x86_64).
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_GET_VCPU_MMAP_SIZE: libc::c_ulong = 0xAE04;
const KVM_GET_SUPPORTED_CPUID: libc::c_ulong = 0xC008_AE05;
const KVM_CREATE_VCPU: libc::c_ulong = 0xAE41;
const KVM_SET_USER_MEMORY_REGION: libc::c_ulong = 0x4020_AE46;
const KVM_RUN: libc::c_ulong = 0xAE80;
const KVM_SET_REGS: libc::c_ulong = 0x4090_AE82;
const KVM_GET_SREGS: libc::c_ulong = 0x8138_AE83;
const KVM_SET_SREGS: libc::c_ulong = 0x4138_AE84;
const KVM_EXIT_HLT: u32 = 5;

const SREGS_SIZE: usize = 312;
const REGS_SIZE: usize = 144;
const CPUID_ENTRY_SIZE: usize = 40;
const CPUID_ENTRIES: usize = 256;
const GUEST_MEM: usize = 0x20_0000;

/// A file descriptor closed on drop.
struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor is owned by this value and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// An anonymous or file mapping unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(fd: libc::c_int, len: usize) -> Option<Mapping> {
        let flags = if fd < 0 {
            libc::MAP_SHARED | libc::MAP_ANONYMOUS
        } else {
            libc::MAP_SHARED
        };
        // SAFETY: a fresh mapping; the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Mapping { ptr, len })
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` maps `len` readable and writable bytes owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region mapped in `new`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn ioctl_int(fd: libc::c_int, req: libc::c_ulong, arg: libc::c_ulong) -> libc::c_int {
    // SAFETY: these requests take an integer argument, not a pointer.
    unsafe { libc::ioctl(fd, req, arg) }
}

fn ioctl_buf(fd: libc::c_int, req: libc::c_ulong, buf: &mut [u8]) -> libc::c_int {
    // SAFETY: `buf` is at least as large as the struct the request reads or
    // writes (sizes are encoded in the request numbers used here).
    unsafe { libc::ioctl(fd, req, buf.as_mut_ptr()) }
}

fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u32(buf: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_ne_bytes(b)
}

/// Writes a `struct kvm_segment` (24 bytes) at `off`.
fn put_segment(sregs: &mut [u8], off: usize, selector: u16, kind: u8, long: bool) {
    put_u64(sregs, off, 0); // base
    sregs[off + 8..off + 12].copy_from_slice(&0xffff_ffffu32.to_ne_bytes()); // limit
    sregs[off + 12..off + 14].copy_from_slice(&selector.to_ne_bytes());
    // type, present, dpl, db, s, l, g, avl, unusable, padding
    let flags = [kind, 1, 0, u8::from(!long), 1, u8::from(long), 1, 0, 0, 0];
    sregs[off + 14..off + 24].copy_from_slice(&flags);
}

fn probe_device(path: &str, bound: Duration) -> KvmProbe {
    let Ok(cpath) = std::ffi::CString::new(path) else {
        return no("bad device path");
    };
    // SAFETY: a plain open(2) of a NUL-terminated path.
    let raw = unsafe { libc::open(cpath.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return no(format!(
            "cannot open {path}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let kvm = Fd(raw);
    if ioctl_int(kvm.0, KVM_GET_API_VERSION, 0) != 12 {
        return no("unexpected KVM API version");
    }
    if let Err(why) = check_cpuid(&kvm) {
        return no(why);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    // The vCPU runs in its own thread so a hung KVM_RUN cannot hang the
    // caller; on timeout that thread and its descriptors are left behind.
    std::thread::spawn(move || {
        let _ = tx.send(run_long_mode_hlt(&kvm));
    });
    match rx.recv_timeout(bound) {
        Ok(Ok(())) => KvmProbe {
            usable: true,
            reason: "64-bit test guest ran and the CPUID baseline is offered".into(),
        },
        Ok(Err(why)) => no(why),
        Err(_) => no(format!("test vCPU did not halt within {bound:?}")),
    }
}

/// Checks that KVM offers SSE3, SSSE3 and CMPXCHG16B (CPUID 1 ECX bits 0, 9,
/// 13) and long mode (CPUID 0x8000_0001 EDX bit 29).
fn check_cpuid(kvm: &Fd) -> Result<(), String> {
    let mut buf = vec![0u8; 8 + CPUID_ENTRY_SIZE * CPUID_ENTRIES];
    buf[0..4].copy_from_slice(&(CPUID_ENTRIES as u32).to_ne_bytes());
    if ioctl_buf(kvm.0, KVM_GET_SUPPORTED_CPUID, &mut buf) < 0 {
        return Err(format!(
            "KVM_GET_SUPPORTED_CPUID: {}",
            std::io::Error::last_os_error()
        ));
    }
    let n = (get_u32(&buf, 0) as usize).min(CPUID_ENTRIES);
    let (mut leaf1_ecx, mut ext_edx) = (None, None);
    for i in 0..n {
        let e = 8 + i * CPUID_ENTRY_SIZE;
        match (get_u32(&buf, e), get_u32(&buf, e + 4)) {
            (1, 0) => leaf1_ecx = Some(get_u32(&buf, e + 20)),
            (0x8000_0001, 0) => ext_edx = Some(get_u32(&buf, e + 24)),
            _ => {}
        }
    }
    let ecx = leaf1_ecx.ok_or("KVM offers no CPUID leaf 1")?;
    for (bit, name) in [(0, "SSE3"), (9, "SSSE3"), (13, "CX16")] {
        if ecx & (1 << bit) == 0 {
            return Err(format!(
                "KVM hides {name} from guests (restricted KVM such as PVM)"
            ));
        }
    }
    if ext_edx.is_none_or(|edx| edx & (1 << 29) == 0) {
        return Err("KVM offers no long mode".into());
    }
    Ok(())
}

/// Runs `mov byte [0x500], 0x42; hlt` in 64-bit mode in a fresh VM.
fn run_long_mode_hlt(kvm: &Fd) -> Result<(), String> {
    let err = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    let vm = ioctl_int(kvm.0, KVM_CREATE_VM, 0);
    if vm < 0 {
        return Err(err("KVM_CREATE_VM"));
    }
    let vm = Fd(vm);
    let mut mem = Mapping::new(-1, GUEST_MEM).ok_or_else(|| err("mmap guest memory"))?;
    {
        let m = mem.bytes();
        // Page tables: PML4 at 0x1000 -> PDPT at 0x2000 -> PD at 0x3000 whose
        // first entry maps 2 MiB at 0 (present, writable, large page).
        put_u64(m, 0x1000, 0x2000 | 3);
        put_u64(m, 0x2000, 0x3000 | 3);
        put_u64(m, 0x3000, 0x83);
        let code = [0xC6, 0x04, 0x25, 0x00, 0x05, 0x00, 0x00, 0x42, 0xF4];
        m[0x8000..0x8000 + code.len()].copy_from_slice(&code);
    }
    let mut region = [0u8; 32];
    put_u64(&mut region, 8, 0); // guest_phys_addr (slot 0, flags 0 before)
    put_u64(&mut region, 16, GUEST_MEM as u64);
    put_u64(&mut region, 24, mem.ptr as u64);
    if ioctl_buf(vm.0, KVM_SET_USER_MEMORY_REGION, &mut region) < 0 {
        return Err(err("KVM_SET_USER_MEMORY_REGION"));
    }
    let vcpu = ioctl_int(vm.0, KVM_CREATE_VCPU, 0);
    if vcpu < 0 {
        return Err(err("KVM_CREATE_VCPU"));
    }
    let vcpu = Fd(vcpu);
    let run_size = ioctl_int(kvm.0, KVM_GET_VCPU_MMAP_SIZE, 0);
    if run_size < 12 {
        return Err(err("KVM_GET_VCPU_MMAP_SIZE"));
    }
    let mut run = Mapping::new(vcpu.0, run_size as usize).ok_or_else(|| err("mmap kvm_run"))?;

    let mut sregs = [0u8; SREGS_SIZE];
    if ioctl_buf(vcpu.0, KVM_GET_SREGS, &mut sregs) < 0 {
        return Err(err("KVM_GET_SREGS"));
    }
    put_segment(&mut sregs, 0, 8, 11, true); // cs: 64-bit code
    for off in [24, 48, 72, 96, 120] {
        put_segment(&mut sregs, off, 16, 3, false); // ds es fs gs ss
    }
    put_u64(&mut sregs, 224, 0x8005_0033); // cr0: PE MP ET NE WP AM PG
    put_u64(&mut sregs, 240, 0x1000); // cr3
    put_u64(&mut sregs, 248, 0x20); // cr4: PAE
    put_u64(&mut sregs, 264, 0x500); // efer: LME LMA
    if ioctl_buf(vcpu.0, KVM_SET_SREGS, &mut sregs) < 0 {
        return Err(err("KVM_SET_SREGS"));
    }
    let mut regs = [0u8; REGS_SIZE];
    put_u64(&mut regs, 48, 0x9000); // rsp
    put_u64(&mut regs, 128, 0x8000); // rip
    put_u64(&mut regs, 136, 2); // rflags
    if ioctl_buf(vcpu.0, KVM_SET_REGS, &mut regs) < 0 {
        return Err(err("KVM_SET_REGS"));
    }
    if ioctl_int(vcpu.0, KVM_RUN, 0) < 0 {
        return Err(err("KVM_RUN"));
    }
    let exit = get_u32(run.bytes(), 8);
    if exit != KVM_EXIT_HLT {
        return Err(format!("test vCPU exited with reason {exit}, not HLT"));
    }
    if mem.bytes()[0x500] != 0x42 {
        return Err("test vCPU store not visible in guest memory".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_means_tcg() {
        let p = probe_device("/nonexistent/kvm", Duration::from_secs(1));
        assert!(!p.usable);
        assert!(p.reason.contains("cannot open"), "{}", p.reason);
    }

    #[test]
    fn probe_gives_a_reason_either_way() {
        let p = probe();
        assert!(!p.reason.is_empty());
        // Consistent with the override-free detection.
        if std::env::var(DOMAIN_TYPE_ENV).is_err() {
            let t = detect_domain_type();
            assert_eq!(t == DomainType::Kvm, p.usable, "{}", p.reason);
        }
    }

    #[test]
    fn segment_layout() {
        let mut s = [0u8; SREGS_SIZE];
        put_segment(&mut s, 0, 8, 11, true);
        assert_eq!(&s[12..14], &8u16.to_ne_bytes());
        assert_eq!(s[14], 11); // type
        assert_eq!(s[15], 1); // present
        assert_eq!(s[17], 0); // db clear in 64-bit code
        assert_eq!(s[19], 1); // l
    }
}
