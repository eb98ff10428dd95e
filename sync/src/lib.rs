//! Clock synchronisation for netlat.
//!
//! * [`clock`]: reading the host's clocks and the CLOCK_MONOTONIC →
//!   CLOCK_REALTIME mapping that every capture records, so monotonic kernel
//!   timestamps can be shown as wall time.
#![deny(missing_docs)]

pub mod clock;
