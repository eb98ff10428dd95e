//! Shared preamble of the kernel tests.

use std::{
    path::Path,
    sync::{Mutex, MutexGuard},
};

/// Kernel tests share hooks and program lists: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Start of every kernel test: `None` (skip, with a message) without root
/// outside CI, a failure without root in CI; otherwise the guard that keeps
/// kernel tests one at a time within a test binary (cargo runs test
/// binaries one after another).
pub fn kernel_test(test: &str) -> Option<MutexGuard<'static, ()>> {
    if !crate::netns::is_root() {
        assert!(std::env::var("CI").is_err(), "{test}: kernel tests must run as root in CI");
        eprintln!("SKIPPED {test}: needs root (run scripts/test as root)");
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Names of loaded BPF programs starting with `netlat_`, from the kernel's
/// program id list (bpf(2); bpftool is not installed everywhere). A program
/// left attached after its capture exited would still be listed here.
pub fn netlat_programs() -> Vec<String> {
    let mut names = Vec::new();
    let mut id: u32 = 0;
    loop {
        #[repr(C)]
        #[derive(Default)]
        struct GetNext {
            start_id: u32,
            next_id: u32,
            open_flags: u32,
        }
        let mut attr = GetNext { start_id: id, ..Default::default() };
        // BPF_PROG_GET_NEXT_ID = 11
        let r =
            unsafe { libc::syscall(libc::SYS_bpf, 11, &mut attr as *mut _ as usize, std::mem::size_of::<GetNext>()) };
        if r != 0 {
            break;
        }
        id = attr.next_id;
        #[repr(C)]
        struct ById {
            id: u32,
            next_id: u32,
            open_flags: u32,
        }
        let mut a = ById { id, next_id: 0, open_flags: 0 };
        // BPF_PROG_GET_FD_BY_ID = 13
        let fd = unsafe { libc::syscall(libc::SYS_bpf, 13, &mut a as *mut _ as usize, std::mem::size_of::<ById>()) };
        if fd < 0 {
            continue;
        }
        let mut info = [0u8; 256];
        #[repr(C)]
        struct InfoAttr {
            bpf_fd: u32,
            info_len: u32,
            info: u64,
        }
        let mut ia = InfoAttr { bpf_fd: fd as u32, info_len: info.len() as u32, info: info.as_mut_ptr() as u64 };
        // BPF_OBJ_GET_INFO_BY_FD = 15; bpf_prog_info.name is at offset 64, 16 bytes.
        let r =
            unsafe { libc::syscall(libc::SYS_bpf, 15, &mut ia as *mut _ as usize, std::mem::size_of::<InfoAttr>()) };
        unsafe { libc::close(fd as i32) };
        if r == 0 {
            let raw = &info[64..80];
            let end = raw.iter().position(|b| *b == 0).unwrap_or(16);
            let name = String::from_utf8_lossy(&raw[..end]).into_owned();
            if name.starts_with("netlat_") {
                names.push(name);
            }
        }
    }
    names
}

/// Runs `traffic` with a [`crate::capture::start_pair`] capture (arguments `common`) into
/// `out` around it, and checks that both captures stopped cleanly (panics with their
/// stderr otherwise).
pub fn captured_pair<T>(lab: &crate::Lab, out: &std::path::Path, common: &[&str], traffic: impl FnOnce() -> T) -> T {
    let (cap_a, cap_b) = crate::capture::start_pair(lab, out, &[], common).expect("starting the captures");
    let result = traffic();
    let (fa, fb) = (cap_a.stop().expect("stopping capture a"), cap_b.stop().expect("stopping capture b"));
    assert_eq!((fa.code, fb.code), (Some(0), Some(0)), "{}\n{}", fa.stderr, fb.stderr);
    result
}

/// The run-metadata record of the one capture that wrote into `dir`.
pub fn run_meta(dir: &Path) -> serde_json::Value {
    let f = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".meta.json"))
        .unwrap_or_else(|| panic!("no run metadata in {}", dir.display()));
    serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
}
