//! Clock synchronisation for netlat.
//!
//! Captures exchange UDP probes in coded pairs with their peers; the kernel
//! programs timestamp every probe and reply where packets are timestamped
//! (TC egress out, XDP in), and the stamps go into each capture's `sync`
//! table. Offline, this crate turns them into one time base:
//!
//! * [`clock`]: reading the host's clocks and the CLOCK_MONOTONIC →
//!   CLOCK_REALTIME mapping that every capture records;
//! * [`prober`]: the probe protocol (prober and responder on one socket);
//! * [`samples`]: stamps → one-way messages, with the coded-pair check;
//! * [`fit`]: the two-sided envelope fit of one window;
//! * [`pair`]: steps, windows and the piecewise map of one pair of hosts;
//! * [`network`]: every pair combined into one map per host against a
//!   reference, consistent around loops;
//! * [`map`]: the piecewise-linear clock maps;
//! * [`traffic`]: one-way samples from the data packets themselves;
//! * [`sim`]: synthetic offset, drift and steps (a test aid).
#![deny(missing_docs)]

pub mod clock;
pub mod fit;
pub mod map;
pub mod network;
pub mod pair;
pub mod prober;
pub mod samples;
pub mod sim;
pub mod traffic;
