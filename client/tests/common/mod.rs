//! Starts the real `spate` broker binary for integration tests (see `spate_testkit`, which
//! also says how the binary is found from this crate).

#![allow(dead_code)]

use std::path::Path;

pub use spate_testkit::Broker;
use spate_testkit::{spate_binary, TestDir};

/// Starts a one-core broker on a fresh data dir, removed when the returned guard drops (kept if
/// the test fails or `SPATE_KEEP_TEST_DATA` is set).
pub fn start_broker(name: &str) -> Broker {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    Broker::start(
        &spate_binary(),
        TestDir::new(root, &format!("client-{name}")),
        &["--log-level", "warn"],
    )
}

/// Runs `fut` on a fresh glommio executor with little locked memory (a broker is running too).
pub fn run<T: 'static>(fut: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .make()
        .expect("glommio executor")
        .run(fut)
}
