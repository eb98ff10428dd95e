//! Helpers shared by integration tests: `mod common;` in a test file, then
//! `common::chromium::render(...)`. Not every test file uses every helper.
#![allow(dead_code)]

pub mod chromium;
