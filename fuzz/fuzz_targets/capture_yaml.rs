//! capture.yaml parsing and validation on arbitrary text: a clear error,
//! never a panic, and bounded work.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = conf::capture::CaptureConf::parse(std::path::Path::new("fuzz.yaml"), text);
    }
});
