#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| symphony_fuzz::wal::run(data));
