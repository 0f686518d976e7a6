//! A trace one of whose part files is the fuzz input (its first byte says
//! which table, its second whether the manifest lists it), read by every
//! reader function the command line uses, and verified.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    qtrace_fuzz::part(data);
});
