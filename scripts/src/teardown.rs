//! Tearing a lab down whatever happens: every namespace and child process a
//! lab command makes is tracked here, and SIGINT, SIGTERM or SIGHUP removes
//! them before the process exits (drop guards cover errors and panics).
//!
//! The handler only records the signal (async-signal-safe); a watcher thread
//! or the command's own loop does the work. Handlers, unlike a blocked
//! signal mask, are not inherited across exec, so child processes (captures,
//! iperf3) keep their own signal handling.

use std::{
    sync::{
        atomic::{AtomicI32, Ordering},
        Mutex,
    },
    time::Duration,
};

static SIGNALLED: AtomicI32 = AtomicI32::new(0);
static NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Held while tearing down: a second caller waits for the first to finish.
static TEARING: Mutex<()> = Mutex::new(());

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNALLED.store(sig, Ordering::SeqCst);
}

/// Installs the handler for SIGINT, SIGTERM and SIGHUP.
pub fn catch_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a handler that only stores to an atomic; SA_RESTART keeps
        // the other threads' blocking calls going.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// The signal received since [`catch_signals`], if any.
pub fn signalled() -> Option<i32> {
    match SIGNALLED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// After a command failed: if a signal came first (its teardown making the command's
/// work fail), the exit status of that signal once the teardown is done, else `None`.
pub fn interrupted_status() -> Option<u8> {
    let sig = signalled()?;
    teardown_all();
    Some((128 + sig).clamp(0, 255) as u8)
}

/// [`catch_signals`], and a thread that on a signal stops the tracked
/// children, deletes the tracked namespaces and exits with 128 + signal.
/// For long commands (experiments) whose main thread cannot poll.
pub fn exit_on_signal() {
    catch_signals();
    std::thread::spawn(|| loop {
        if let Some(sig) = signalled() {
            eprintln!("netlat-lab: signal {sig}: tearing the lab down");
            teardown_all();
            std::process::exit(128 + sig);
        }
        std::thread::sleep(Duration::from_millis(50));
    });
}

/// Records a namespace to delete on a signal.
pub fn track_netns(name: &str) {
    NAMESPACES.lock().unwrap_or_else(|e| e.into_inner()).push(name.to_owned());
}

/// Forgets a namespace (deleted by its owner).
pub fn untrack_netns(name: &str) {
    NAMESPACES.lock().unwrap_or_else(|e| e.into_inner()).retain(|n| n != name);
}

/// Records a child process to stop (SIGTERM) on a signal.
pub fn track_child(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

/// Forgets a child process (reaped by its owner).
pub fn untrack_child(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != pid);
}

/// Stops every tracked child and deletes every tracked namespace; a call while another
/// is under way returns when that one is done.
pub fn teardown_all() {
    let _one = TEARING.lock().unwrap_or_else(|e| e.into_inner());
    let children: Vec<u32> = std::mem::take(&mut *CHILDREN.lock().unwrap_or_else(|e| e.into_inner()));
    for pid in &children {
        // SAFETY: kill(2) on a child this process started.
        unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
    }
    for pid in &children {
        // Give each up to 5 s (all at once) to close its files, then kill it: a capture
        // left running outlives its lab. One killed leaves a `.partial` file that
        // `netlat-capture recover` finishes.
        let reaped = (0..100).any(|_| {
            // SAFETY: non-blocking reap of our own child.
            let done = unsafe { libc::waitpid(*pid as i32, std::ptr::null_mut(), libc::WNOHANG) } != 0;
            if !done {
                std::thread::sleep(Duration::from_millis(50));
            }
            done
        });
        if !reaped {
            eprintln!("netlat-lab: child {pid} still running 5 s after SIGTERM: killing it");
            // SAFETY: kill(2) and a blocking reap of our own child.
            unsafe {
                libc::kill(*pid as i32, libc::SIGKILL);
                libc::waitpid(*pid as i32, std::ptr::null_mut(), 0);
            }
        }
    }
    let names: Vec<String> = std::mem::take(&mut *NAMESPACES.lock().unwrap_or_else(|e| e.into_inner()));
    for ns in names.iter().rev() {
        let _ = std::process::Command::new("ip").args(["netns", "del", ns]).status();
    }
}
