//! Clock sync during a capture: the prober and responder of the `sync`
//! crate, run on a thread with its socket in the namespace of the first
//! captured interface (where the capture's own address lives).

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use sync::prober::{Prober, ProberConfig, ProberStats};

use crate::netns::Netns;

/// Clock-sync settings of a run.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Responder port; also the kernel programs' sync port.
    pub port: u16,
    /// Peers to probe.
    pub peers: Vec<SocketAddr>,
    /// Coded pairs per second per peer.
    pub rate: f64,
    /// Gap inside a pair.
    pub gap: Duration,
    /// When the run is due to end (`--duration`): its last seconds are probed fastest.
    pub end: Option<std::time::Instant>,
}

/// The running prober.
pub struct SyncRunner {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<ProberStats>>,
}

impl SyncRunner {
    /// Binds the socket inside `netns` and starts probing. A bind failure
    /// is an error when peers are to be probed; without peers the capture
    /// goes on (it still timestamps probes others send) and the reason is
    /// returned for the metadata.
    pub fn start(opts: &SyncOptions, netns: &Netns) -> Result<Result<Self, String>, String> {
        let any_v6 = opts.peers.iter().any(SocketAddr::is_ipv6);
        let bind = if any_v6 {
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), opts.port)
        } else {
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), opts.port)
        };
        let cfg =
            ProberConfig { bind, peers: opts.peers.clone(), pairs_per_sec: opts.rate, gap: opts.gap, end: opts.end };
        let bound = netns.run(move || Prober::bind(cfg)).map_err(|e| e.to_string())?;
        let prober = match bound {
            Ok(p) => p,
            Err(e) => {
                let why = format!("cannot bind UDP port {} in namespace {:?}: {e}", opts.port, netns.name);
                return if opts.peers.is_empty() { Ok(Err(why)) } else { Err(format!("clock sync: {why}")) };
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("netlat-sync".into())
            .spawn(move || prober.run(&flag))
            .map_err(|e| format!("clock sync: cannot start the prober thread: {e}"))?;
        Ok(Ok(Self { stop, thread: Some(thread) }))
    }

    /// Stops probing and returns the counts.
    pub fn finish(mut self) -> Option<ProberStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for SyncRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
