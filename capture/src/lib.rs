//! netlat-capture: timestamps packets with eBPF (XDP, TC) on chosen
//! interfaces, in any network namespace of the host, and writes them into
//! rotating Parquet files.
//!
//! * [`filter`]: tcpdump-like filter expressions compiled for the kernel (the compiler
//!   lives in `capture_common::compile`, so that netlat-analyze filters with the same language);
//! * [`netns`]: naming and entering network namespaces;
//! * [`loader`]: loading the eBPF object and attaching hooks; [`qdisc`]: removing the
//!   `clsact` qdisc added for netlink TC attachment;
//! * [`schema`]: the `events` table; [`sync_table`]: the `sync` table;
//! * [`syncing`]: the clock-sync prober and responder during a run;
//! * [`ring`]: Parquet ring files with crash-safe rotation;
//! * [`ringread`]: batched reading of the kernel's ring buffers;
//! * [`testrun`]: the kernel's test runs of a loaded program (benchmarks);
//! * [`recover`]: finishing the files of a capture that died;
//! * [`meta`]: the run-metadata record;
//! * [`pipeline`]: kernel ring buffers → batches → the Parquet writer thread;
//! * [`run`]: one capture run, end to end;
//! * [`preflight`]: what the machine lacks, said plainly;
//! * [`btf`]: the running kernel's type information (field offsets, functions, tracepoints);
//! * [`probes`]: which probe points of the catalog (`conf/probes.yaml`) this kernel allows;
//! * [`funcs`]: the probe points given as data (fentry, kprobe, any tracepoint) and their slots.
#![deny(missing_docs)]

/// The filter-expression compiler (re-exported from `capture_common::compile`).
pub mod filter {
    pub use capture_common::compile::*;
}
pub mod btf;
pub mod funcs;
pub mod loader;
pub mod meta;
pub mod netns;
pub mod pipeline;
pub mod preflight;
pub mod priority;
pub mod probes;
pub mod qdisc;
pub mod recover;
pub mod ring;
pub mod ringread;
pub mod run;
pub mod schema;
#[cfg(test)]
mod stack_budget;
pub mod sync_table;
pub mod syncing;
pub mod testrun;
pub mod udp_ingress;
