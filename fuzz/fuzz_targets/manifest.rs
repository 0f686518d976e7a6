//! A trace whose `manifest.json` is the fuzz input, read by every reader
//! function the command line uses, and verified.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    qtrace_fuzz::manifest(data);
});
