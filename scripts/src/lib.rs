//! netlat's lab: topologies of network namespaces on one machine, traffic
//! with known content and rates, and helpers for the kernel tests.
//!
//! Test traffic only ever flows between namespaces this crate creates, on
//! addresses from 198.18.0.0/15 (RFC 2544 benchmarking space). Namespaces
//! are named `nl<pid>x<n><host>` so leftovers of a killed run can be told
//! apart and removed ([`cleanup_stale`]).
#![deny(missing_docs)]

pub mod accounting;
pub mod benchanalyze;
pub mod benchcapture;
pub mod benchparts;
pub mod bins;
pub mod capture;
pub mod collect;
pub mod experiments;
pub mod genevents;
pub mod labcli;
pub mod netns;
pub mod ping;
pub mod relay;
pub mod soak;
pub mod sshlab;
pub mod syncbench;
pub mod syncoverlay;
pub mod teardown;
pub mod testing;
pub mod topo;
pub mod topology;
pub mod traffic;
pub mod truth;

pub use topo::{Host, Lab};
