//! `BPF_PROG_TEST_RUN`: the kernel runs a loaded program on a given frame many times and
//! reports the mean time per run. netlat's benchmarks use it for the per-hook cost of the
//! packet programs on their own, apart from the traffic and the kernel paths around them.
//! Also the benchmarks' empty XDP program ([`attach_xdp_pass`]).

use std::{io, os::fd::AsRawFd as _, os::fd::BorrowedFd};

const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// The `test` member of `union bpf_attr` (include/uapi/linux/bpf.h), up to `batch_size`.
#[repr(C)]
#[derive(Default)]
struct TestAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// What one test run reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (of the last run).
    pub retval: u32,
    /// Mean nanoseconds per run, as the kernel measured it.
    pub ns_per_run: u32,
}

/// Runs the program `prog` on `frame` (an Ethernet frame) `repeat` times.
pub fn test_run(prog: BorrowedFd<'_>, frame: &[u8], repeat: u32) -> io::Result<TestRun> {
    let mut attr = TestAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: frame.len() as u32,
        data_in: frame.as_ptr() as u64,
        repeat,
        ..Default::default()
    };
    // SAFETY: bpf(2) with a valid attribute of the size given; the kernel only reads
    // `frame` (no data_out, no ctx).
    let r = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_TEST_RUN, &mut attr as *mut TestAttr, std::mem::size_of::<TestAttr>())
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TestRun { retval: attr.retval, ns_per_run: attr.duration })
}

/// Attaches netlat's empty XDP program (`netlat_xdp_pass`, which passes every packet) to
/// `iface` in `netns`: what XDP mode costs an interface before any program work. Detached
/// when the returned object is dropped.
pub fn attach_xdp_pass(netns: &crate::netns::Netns, iface: &str) -> anyhow::Result<aya::Ebpf> {
    use anyhow::Context as _;
    let mut ebpf = aya::Ebpf::load(crate::loader::EBPF_OBJ).context("loading netlat's eBPF object")?;
    let p: &mut aya::programs::Xdp =
        ebpf.program_mut("netlat_xdp_pass").context("netlat_xdp_pass missing from the object")?.try_into()?;
    p.load().context("loading netlat_xdp_pass")?;
    let ifindex = netns.ifindex(iface)?;
    netns
        .run(|| p.attach_to_if_index(ifindex, aya::programs::XdpMode::Default))?
        .context("attaching netlat_xdp_pass")?;
    Ok(ebpf)
}
