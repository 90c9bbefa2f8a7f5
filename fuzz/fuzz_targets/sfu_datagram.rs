#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veche_fuzz::sfu_datagram::run(data));
