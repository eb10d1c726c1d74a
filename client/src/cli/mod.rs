//! The admin command line behind both `spate-admin ...` and `spate admin ...`: topics, groups,
//! cluster and leader elections, as `rpk` and Kafka's scripts offer them.
//!
//! [`main`] parses a command line (clap: `--help` at every level), runs the command on a
//! short-lived glommio executor with an [`Admin`], and returns the process exit code:
//!
//! - 0: done (also when stdout is a pipe closed early, as by `| head -1`);
//! - 1: the cluster refused (a Kafka error, printed by name: `UNKNOWN_TOPIC_OR_PARTITION`) or
//!   the request failed otherwise;
//! - 2: bad command line;
//! - 3: the bootstrap broker could not be reached.
//!
//! Every command writes its output into a buffer that is written to stdout at the end, so a
//! closed pipe is one write error, handled in one place, and never a panic. `--format json`
//! prints one JSON document per command instead of a table; its field names are stable (new
//! fields may be added, none renamed or removed).
//!
//! The command table is the [`Command`] enum: a new command is a variant, a handler in the
//! module of its noun (`topics`, `groups`, `cluster`) and an arm in `run`.

mod cluster;
#[cfg(test)]
mod doc_tests;
mod groups;
mod reassign;
mod topics;

use std::ffi::OsString;
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::{Admin, ClientConfig, ClientError};

/// What a command handler fails with: a [`ClientError`] (downcast for the exit code) or a
/// message.
type Error = Box<dyn std::error::Error>;

/// Exit code when the request failed (a Kafka error or otherwise).
pub const EXIT_FAILED: i32 = 1;
/// Exit code for a bad command line.
pub const EXIT_USAGE: i32 = 2;
/// Exit code when the bootstrap broker cannot be reached.
pub const EXIT_UNREACHABLE: i32 = 3;

const AFTER_HELP: &str = "\
Exit codes: 0 done, 1 refused or failed (Kafka errors are printed by name), 2 bad command \
line, 3 broker unreachable.";

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "spate-admin",
    about = "Administer a Spate (or Kafka) cluster: topics, consumer groups, brokers.",
    after_help = AFTER_HELP,
    subcommand_required = true,
    arg_required_else_help = true
)]
struct Cli {
    /// A broker to start from.
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Output format: tables for people, or one JSON document for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned columns.
    Text,
    /// One JSON document.
    Json,
}

/// The command table.
#[derive(Debug, Subcommand)]
enum Command {
    /// Cluster id, controller and brokers (fenced or not, metadata lag); decommission brokers.
    Cluster {
        /// Also list every partition's leader, leader epoch, replicas, ISR and each replica's
        /// lag (DescribeLogDirs to every broker; "-" for a broker that does not answer).
        #[arg(long)]
        topics: bool,
        #[command(subcommand)]
        action: Option<cluster::ClusterAction>,
    },
    /// Move leadership back to each partition's preferred (first) replica.
    ElectLeaders {
        /// Only this topic's partitions (repeatable; default: every partition).
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Move partitions to other brokers (KIP-455), or cancel a move.
    Reassign(reassign::ReassignArgs),
    /// Partition moves in progress: replicas, those being added and removed.
    Reassignments {
        /// Only this topic's moves (repeatable; default: every one).
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Consumer groups: list, describe, reset offsets, delete.
    #[command(subcommand, arg_required_else_help = true)]
    Groups(groups::GroupsCommand),
    /// Topics: create, list, describe, configs, partitions, trim, delete.
    #[command(subcommand, arg_required_else_help = true)]
    Topics(topics::TopicsCommand),
}

/// Runs the admin command line `args` (without the program name) and returns the process
/// exit code; `bin_name` is how usage lines name the program (`spate-admin`, `spate admin`).
pub fn main(bin_name: &str, args: impl IntoIterator<Item = OsString>) -> i32 {
    let argv = std::iter::once(OsString::from(bin_name)).chain(args);
    let matches = match Cli::command().bin_name(bin_name).try_get_matches_from(argv) {
        Ok(m) => m,
        Err(e) => return print_clap(&e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return print_clap(&e),
    };
    let alter_ops = topics::ordered_config_ops(&matches);
    let mut out = String::new();
    let result = resolve(&cli.bootstrap).and_then(|addr| {
        glommio::LocalExecutorBuilder::default()
            // A short-lived tool: little registered memory, so it runs under any memlock limit.
            .io_memory(512 << 10)
            .make()
            .map_err(|e| format!("starting the executor: {e}"))?
            .run(run(addr, cli.command, cli.format, alter_ops, &mut out))
    });
    let written = write_stdout(out.as_bytes());
    match (result, written) {
        (Err(e), _) => {
            eprintln!("{bin_name}: {e}");
            exit_code(&e)
        }
        (Ok(()), Ok(())) => 0,
        // `| head` closed the pipe: the reader has what it wanted.
        (Ok(()), Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        (Ok(()), Err(e)) => {
            eprintln!("{bin_name}: writing the output: {e}");
            EXIT_FAILED
        }
    }
}

/// Prints clap's help (stdout, exit 0) or usage error (stderr, exit 2).
fn print_clap(e: &clap::Error) -> i32 {
    let text = e.render().to_string();
    if e.use_stderr() {
        eprint!("{text}");
    } else if let Err(err) = write_stdout(text.as_bytes()) {
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            return EXIT_FAILED;
        }
    }
    e.exit_code()
}

fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()
}

fn resolve(bootstrap: &str) -> Result<SocketAddr, Error> {
    bootstrap
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("{bootstrap} resolves to no address").into())
}

async fn run(
    bootstrap: SocketAddr,
    command: Command,
    format: Format,
    alter_ops: Vec<(String, crate::ConfigOperation)>,
    out: &mut String,
) -> Result<(), Error> {
    let mut admin = Admin::connect(ClientConfig::new(bootstrap)).await?;
    let admin = &mut admin;
    let mut out = Out { text: out, format };
    match command {
        Command::Cluster {
            action: Some(action),
            ..
        } => cluster::action(admin, action, &mut out).await,
        Command::Cluster {
            topics,
            action: None,
        } => cluster::cluster(admin, topics, &mut out).await,
        Command::ElectLeaders { topics } => cluster::elect_leaders(admin, topics, &mut out).await,
        Command::Reassign(args) => reassign::reassign(admin, args, &mut out).await,
        Command::Reassignments { topics } => reassign::reassignments(admin, topics, &mut out).await,
        Command::Groups(command) => groups::run(admin, command, &mut out).await,
        Command::Topics(command) => topics::run(admin, command, alter_ops, &mut out).await,
    }
}

/// Where a command prints: text appended to a buffer, or one JSON document.
struct Out<'a> {
    text: &'a mut String,
    format: Format,
}

impl Out<'_> {
    fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints one line of text.
    fn line(&mut self, line: impl AsRef<str>) {
        self.text.push_str(line.as_ref());
        self.text.push('\n');
    }

    /// Prints the JSON document of a command.
    fn document(&mut self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).expect("a Value always serializes");
        self.line(text);
    }
}

/// A Kafka error code by name (`LEADER_NOT_AVAILABLE`), or `none` for 0.
fn error_name(code: i16) -> String {
    match spate_wire::ErrorCode::try_from(code) {
        _ if code == 0 => "none".to_owned(),
        Ok(c) => c.name().to_owned(),
        Err(_) => format!("error-{code}"),
    }
}

/// The Kafka error name of a failed call, or `None` when it is not a Kafka error.
fn client_error_name(error: &ClientError) -> Option<String> {
    match error {
        ClientError::Broker { code, .. } => Some(code.name().to_owned()),
        ClientError::UnknownErrorCode { code, .. } => Some(error_name(*code)),
        ClientError::RetriesExhausted { last, .. } => client_error_name(last),
        _ => None,
    }
}

/// The exit code for a failed run: unreachable if the bootstrap broker could not be reached
/// at all, failed otherwise.
fn exit_code(error: &Error) -> i32 {
    match error.downcast_ref::<ClientError>() {
        Some(ClientError::Io { .. } | ClientError::Closed { .. }) => EXIT_UNREACHABLE,
        _ => EXIT_FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("spate-admin").chain(text.split_whitespace()))
    }

    #[test]
    fn kafka_errors_are_named_and_unreachable_brokers_have_their_own_exit_code() {
        assert_eq!(error_name(5), "LEADER_NOT_AVAILABLE");
        assert_eq!(error_name(0), "none");
        let io: Error = Box::new(ClientError::Io {
            addr: "a".to_owned(),
            source: std::io::Error::other("refused"),
        });
        assert_eq!(exit_code(&io), EXIT_UNREACHABLE);
        let refused: Error = Box::new(ClientError::Broker {
            code: spate_wire::ErrorCode::NotCoordinator,
            what: "g".to_owned(),
        });
        assert_eq!(exit_code(&refused), EXIT_FAILED);
        assert!(refused.to_string().contains("NOT_COORDINATOR"));
        let exhausted = ClientError::RetriesExhausted {
            attempts: 3,
            last: Box::new(ClientError::Broker {
                code: spate_wire::ErrorCode::UnknownTopicOrPartition,
                what: "t".to_owned(),
            }),
        };
        assert_eq!(
            client_error_name(&exhausted).as_deref(),
            Some("UNKNOWN_TOPIC_OR_PARTITION")
        );
    }

    #[test]
    fn help_is_real_at_every_level_and_bad_lines_exit_2() {
        for line in [
            "--help",
            "topics --help",
            "topics create --help",
            "groups --help",
            "groups describe --help",
            "cluster --help",
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp, "{line}");
            assert_eq!(e.exit_code(), 0, "{line}");
        }
        for line in [
            "cluster --frobnicate",
            "groups reset g",
            "groups reset g --to-earliest --to-latest",
            "groups frobnicate",
            "topics alter-config t",
            "topics alter-config t --set novalue",
            "topics alter-config t --set",
            "topics create",
            "topics delete",
            "topics trim t --partition 0",
            "topics add-partitions t",
            "elect-leaders --topic",
            "--format yaml cluster",
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e.exit_code(), EXIT_USAGE, "{line}: {e}");
        }
    }

    #[test]
    fn command_lines_parse() {
        let cli = parse("--bootstrap h:1 cluster --topics").unwrap();
        assert_eq!(cli.bootstrap, "h:1");
        assert!(matches!(
            cli.command,
            Command::Cluster {
                topics: true,
                action: None
            }
        ));
        let cli = parse("cluster decommission 3").unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster {
                action: Some(cluster::ClusterAction::Decommission { id: 3 }),
                ..
            }
        ));
        let cli = parse("cluster decommission-status 3 --wait-secs 30").unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster {
                action: Some(cluster::ClusterAction::DecommissionStatus {
                    id: 3,
                    wait_secs: Some(30)
                }),
                ..
            }
        ));
        // Global flags go anywhere.
        let cli = parse("topics list --format json").unwrap();
        assert_eq!(cli.format, Format::Json);
        assert_eq!(cli.bootstrap, "127.0.0.1:9092");
        let Command::ElectLeaders { topics } =
            parse("elect-leaders --topic a --topic b").unwrap().command
        else {
            panic!("not elect-leaders");
        };
        assert_eq!(topics, ["a", "b"]);
    }
}
