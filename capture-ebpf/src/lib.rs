//! Empty library target: lets `capture` name this crate as a build
//! dependency so cargo rebuilds the loader when kernel code changes.
#![no_std]
