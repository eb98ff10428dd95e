//! Whether the kernel loads an fentry/fexit program: one minimal
//! `BPF_PROG_TYPE_TRACING` program (`r0 = 0; exit`) against the function's
//! BTF id, through bpf(2) directly, so the answer is the kernel's own errno
//! and not a library's interpretation of it. The program is closed at once;
//! nothing is attached.

use conf::probes::Kind;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_TRACE_FENTRY: u32 = 24;
const BPF_TRACE_FEXIT: u32 = 25;
/// Kernel-internal "operation not supported" (no libc name).
const ENOTSUPP: i32 = 524;

/// The prefix of `union bpf_attr` that `BPF_PROG_LOAD` reads, up to
/// `attach_prog_fd`; the kernel takes a shorter attr as zero-extended.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    _pad: u32,
}

const _: () = assert!(std::mem::size_of::<ProgLoadAttr>() == 120);

/// A refused load.
#[derive(Debug)]
pub struct LoadError {
    errno: i32,
    /// Last line of the verifier log, if it said anything.
    log: String,
}

impl LoadError {
    /// Whether the refusal holds for every function (permission, lockdown,
    /// no trampolines) rather than for this one.
    pub fn whole_kind(&self) -> bool {
        matches!(self.errno, libc::EPERM | libc::EACCES | ENOTSUPP | libc::EOPNOTSUPP)
    }

    /// The errno and what it means here.
    pub fn explain(&self) -> String {
        // SAFETY: no arguments, cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let mut s = match self.errno {
            libc::EPERM if !root => "EPERM: not root (needs CAP_BPF and CAP_PERFMON)".to_owned(),
            libc::EPERM => "EPERM: lockdown, or BPF trampolines unavailable".to_owned(),
            ENOTSUPP | libc::EOPNOTSUPP => "ENOTSUPP: BPF trampolines are not supported by this kernel".to_owned(),
            libc::EINVAL => {
                "EINVAL: the function cannot be traced (notrace, or not a traceable BTF function)".to_owned()
            }
            libc::ESRCH | libc::ENOENT => "the function has no attachable address (ESRCH/ENOENT)".to_owned(),
            e => format!("{}", std::io::Error::from_raw_os_error(e)),
        };
        if !self.log.is_empty() {
            s.push_str(&format!("; verifier: {}", self.log));
        }
        s
    }
}

/// Loads and closes a do-nothing fentry (or fexit) program on BTF function `btf_id`.
pub fn try_load(kind: Kind, btf_id: u32) -> Result<(), LoadError> {
    // r0 = 0 (BPF_ALU64 | BPF_MOV | BPF_K); exit (BPF_JMP | BPF_EXIT).
    let insns: [u64; 2] = [0xb7, 0x95];
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"netlat_probe");
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_TRACING,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: name,
        expected_attach_type: if kind == Kind::Fexit { BPF_TRACE_FEXIT } else { BPF_TRACE_FENTRY },
        attach_btf_id: btf_id,
        ..Default::default()
    };
    // SAFETY: attr and every buffer it points to live until the call returns;
    // the size passed is the size of attr.
    let fd = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const ProgLoadAttr, std::mem::size_of::<ProgLoadAttr>())
    };
    if fd >= 0 {
        // SAFETY: a descriptor we own.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned();
    Err(LoadError { errno, log: last })
}
