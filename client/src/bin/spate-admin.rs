//! `spate-admin`: topic, consumer group and cluster administration for a Spate (or Kafka)
//! cluster; `spate admin` runs the same command line. Every command, its options and the exit
//! codes are in `spate-admin --help` (and `--help` after any command); the implementation is
//! [`spate_client::cli`].
//!
//! It lives in the client crate so it works against any broker the client speaks to.

fn main() {
    std::process::exit(spate_client::cli::main(
        "spate-admin",
        std::env::args_os().skip(1),
    ));
}
