//! `spate`: a Kafka-compatible event-streaming broker on io_uring, thread-per-core.
//!
//! Start here: `config` reads flags/file/environment, `runtime` starts one pinned glommio
//! executor per core, `server` accepts connections on each core, `connection` turns bytes into
//! requests and responses, and `handlers` holds one module per Kafka API. `spate admin ...`
//! runs the admin command line (`spate_client::cli`) instead of a broker.

mod admin;
mod cleaner;
mod cluster;
mod config;
mod connection;
mod core;
mod data_dir_lock;
mod errors;
// A few accessors of the group state machine are read only by its tests.
#[allow(dead_code)]
mod group;
mod handlers;
mod handoff;
mod mesh;
mod metadata;
mod metrics;
mod ops;
mod partition;
mod routing;
mod runtime;
mod server;
mod stats;
mod txn;

use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    // `spate admin ...` is the admin command line of the client crate (the same as
    // `spate-admin ...`), dispatched before the broker's flags are parsed.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new("admin")) {
        std::process::exit(spate_client::cli::main(
            "spate admin",
            std::env::args_os().skip(2),
        ));
    }
    let config = config::Config::load()?;
    init_logging(&config)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listen = %config.listen,
        advertised = %format!("{}:{}", config.advertised_host, config.advertised_port),
        data_dir = %config.data_dir.display(),
        "starting spate"
    );
    for name in &config.ignored_env {
        tracing::warn!(variable = %name, "ignoring environment variable that names no setting");
    }
    runtime::run(config)
}

fn init_logging(config: &config::Config) -> anyhow::Result<()> {
    // RUST_LOG wins over --log-level so one can turn up a module without editing the config.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log_level))
        .map_err(|error| anyhow::anyhow!("bad log filter {:?}: {error}", config.log_level))?;
    // Colour only on a terminal: escape codes in a log file or journal are noise.
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log_format {
        config::LogFormat::Human => builder.init(),
        config::LogFormat::Json => builder.json().init(),
    }
    Ok(())
}
