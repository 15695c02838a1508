#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| httpcache_proxy::fuzzing::request_head(data));
