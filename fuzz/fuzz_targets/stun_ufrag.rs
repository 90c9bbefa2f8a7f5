#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| veche_fuzz::stun_ufrag::run(data));
