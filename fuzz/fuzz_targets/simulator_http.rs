//! Arbitrary bytes as an HTTP request to the QuickSight simulator: it must never panic, never
//! answer a server error, and tag every error on an operation's path with `x-amzn-ErrorType`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfupgrade_testbed::quicksight::fuzzing::exercise;
use std::sync::LazyLock;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
});

fuzz_target!(|input: &[u8]| {
    if let Err(violation) = exercise(&RUNTIME, input) {
        panic!("{violation:?}");
    }
});
