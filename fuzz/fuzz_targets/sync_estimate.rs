//! The clock estimator on arbitrary probe stamps (as a hostile or corrupt
//! sync table would give): no panic, and every map it returns evaluates to
//! finite offsets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sync::{
    network::estimate,
    pair::Config,
    samples::{Hook, Stamp},
};

fuzz_target!(|data: &[u8]| {
    let hosts: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let stamps: Vec<Stamp> = data
        .chunks_exact(12)
        .take(4096)
        .map(|c| {
            let ts = i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])) * 1000 + i64::from(c[4]) * 1_000_000_000;
            Stamp {
                host: usize::from(c[5] % 3),
                ts_ns: ts,
                hook: [Hook::TcEgress, Hook::Xdp, Hook::TcIngress][usize::from(c[6] % 3)],
                kind: c[7] & 1,
                idx: c[8] & 1,
                session: u64::from(c[9] & 1),
                seq: u64::from(u16::from_le_bytes([c[10], c[11]])),
                daddr: String::new(),
            }
        })
        .collect();
    let r = estimate(&hosts, &stamps, &mut [], &Config::default(), None);
    for h in &r.hosts {
        if let Some(m) = &h.map {
            for t in [i64::MIN / 4, -1, 0, 1, i64::MAX / 4] {
                assert!(m.offset(t).is_finite() || m.knots.len() > 1_000_000);
            }
        }
    }
});
