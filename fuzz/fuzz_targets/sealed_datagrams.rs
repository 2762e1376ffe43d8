#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bocluster_fuzz::check_sealed(data);
});
