//! Broker configuration: command-line flags, an optional TOML file and `SPATE_*` environment
//! variables, merged in that order of precedence (a flag beats the file, the file beats the
//! environment), then defaults.
//!
//! Every setting has one name used in all three places: `--segment-bytes` on the command line,
//! `segment-bytes = ...` in the file, `SPATE_SEGMENT_BYTES` in the environment. Unknown keys in
//! the file or unknown `SPATE_*` variables are errors, so a typo never silently falls back to a
//! default.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, ValueEnum};
use serde::{Deserialize, Serialize};

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// When partition data is made durable with fdatasync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlushMode {
    /// fdatasync after every append before it is acknowledged (acks=all waits for it).
    EveryAppend,
    /// Group commit: an fdatasync starts as soon as data is unsynced and none is in flight,
    /// shared by every append that arrived meanwhile; `flush-interval-ms` and
    /// `flush-bytes-max` are upper bounds.
    Group,
    /// Never fdatasync on the append path; rely on replication (and on the OS eventually).
    Never,
}

macro_rules! settings {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty ),* $(,)?) => {
        /// Settings as given by one source; `None` means "not given here".
        #[derive(Args, Deserialize, Debug, Default, Clone)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Settings {
            $( $(#[$doc])* #[arg(long)] pub $field: Option<$ty>, )*
        }

        impl Settings {
            /// Every setting's name, as in the file but with `_` for `-`.
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// Keeps every value given here, filling the rest from `lower`.
            pub fn or(self, lower: Settings) -> Settings {
                Settings { $( $field: self.$field.or(lower.$field), )* }
            }
        }
    };
}

settings! {
    /// Address to listen on for Kafka clients [default: 127.0.0.1:9092].
    listen: SocketAddr,
    /// host:port that clients are told to connect to (Metadata) [default: the listen address].
    advertised_listener: String,
    /// Address of the HTTP admin listener (/metrics for Prometheus, /health, /ready), or
    /// `none` to run without it; port 0 picks a free port (logged) [default: 127.0.0.1:9644].
    admin_listen: String,
    /// Directory holding topics and partition logs [default: ./spate-data].
    data_dir: PathBuf,
    /// Number of cores (executors) to run, each pinned to one CPU [default: all CPUs].
    cores: usize,
    /// This broker's node id [default: 0].
    node_id: i32,
    /// Address of the cluster listener, where other brokers connect for the metadata quorum
    /// (and, later, replication); needs controller-voters [default: unset: a single broker].
    cluster_listen: SocketAddr,
    /// The controller quorum's voters, as `ID@HOST:PORT,...`, each PORT that voter's
    /// cluster-listen; usually three brokers, each a voter and a broker (combined mode). A
    /// broker whose node-id is not among them joins as an observer: it follows the metadata
    /// log from the voters and holds partitions like any broker. Unset: this broker is a
    /// cluster of one, as before [default: unset].
    controller_voters: String,
    /// A broker that has not heartbeated the controller for this long is fenced: its
    /// partitions get new leaders (Kafka's broker.session.timeout.ms). Shorter means faster
    /// failover and more false fencing under load [default: 9000].
    broker_session_timeout_ms: u64,
    /// How often a broker heartbeats the controller (Kafka's broker.heartbeat.interval.ms);
    /// well below the session timeout [default: 1000].
    broker_heartbeat_interval_ms: u64,
    /// Log format [default: human].
    log_format: LogFormat,
    /// Log filter, in `tracing` env-filter syntax; RUST_LOG also works [default: info].
    log_level: String,
    /// CPUs for io_uring's worker threads (`iou-wrk-*`: every fdatasync, and the I/O the kernel
    /// could not start without blocking), as a list like `2,3` or `2-5`. By default they run on
    /// the CPU of the executor that submitted the work; on a server give them the housekeeping
    /// CPUs, off the broker's cores (tuning/README.md) [default: unset].
    io_worker_cpus: String,
    /// Bytes of io_uring registered buffer memory per executor; it counts three times against
    /// RLIMIT_MEMLOCK [default: fit the limit, at most 8 MiB].
    io_memory_bytes: usize,
    /// Bytes of partition write buffers per core, shared by every partition the core owns: a
    /// written partition takes its buffers from it and an idle one gives them back, so memory
    /// is bounded by this, not by the partition count. Under pressure partitions get smaller
    /// buffers (down to 16 KiB) and wait for their own writes. The partitions' tail caches
    /// (recent batches for consumers) share a quarter of that [default: 1/64 of the machine's
    /// memory divided among the cores, between 12 MiB and 64 MiB per core].
    write_buffer_pool_bytes: usize,
    /// Largest request frame accepted, in bytes (Kafka's socket.request.max.bytes) [default: 104857600].
    frame_bytes_max: usize,
    /// Most client connections per core [default: 10000].
    connections_per_core_max: usize,
    /// Create a topic when a Metadata request names it and it does not exist [default: true].
    auto_create_topics: bool,
    /// Partitions of an auto-created topic [default: 1].
    num_partitions: i32,
    /// Replicas of a topic created without a replication factor (Kafka's
    /// default.replication.factor); above 1 only in a cluster [default: 1].
    default_replication_factor: i16,
    /// Default retention by age, ms; -1 keeps forever [default: 604800000].
    retention_ms: i64,
    /// Default retention by size per partition, bytes; -1 means no limit [default: -1].
    retention_bytes: i64,
    /// Default segment size before rolling, bytes [default: 1073741824].
    segment_bytes: u64,
    /// Default segment age before rolling, ms [default: 604800000].
    segment_ms: i64,
    /// Default largest record batch accepted, bytes [default: 1048588].
    max_message_bytes: usize,
    /// Default flush policy [default: group].
    flush_mode: FlushMode,
    /// Longest unsynced data waits under group commit, ms [default: 5]: a backstop, since
    /// syncs follow the device (the next starts when the one in flight completes).
    flush_interval_ms: u64,
    /// Group commit after this many unflushed bytes, also between two syncs
    /// [default: 67108864]. This only caps the bytes at very high rates.
    flush_bytes_max: u64,
    /// I/O budget of each core's log cleaner (reads plus writes), bytes per second; Kafka's
    /// log.cleaner.io.max.bytes.per.second. Low by default: cleaner reads compete with appends
    /// for the disk (see docs/benchmarks.md) [default: 10485760].
    log_cleaner_io_max_bytes_per_second: u64,
    /// Memory of each core's cleaner key map (Kafka's log.cleaner.dedupe.buffer.size, per core);
    /// 24 bytes a key [default: 16777216].
    log_cleaner_dedupe_buffer_bytes: usize,
    /// Pause between two passes of a core's cleaner over its compacted partitions, ms
    /// [default: 15000].
    log_cleaner_backoff_ms: u64,
    /// Partitions of `__consumer_offsets` when it is first created [default: 50].
    offsets_topic_partitions: i32,
    /// Replicas of each `__consumer_offsets` partition in a cluster, at most the live brokers
    /// when it is created (Kafka's offsets.topic.replication.factor) [default: 3].
    offsets_topic_replication_factor: i16,
    /// How long the first rebalance of an empty group waits for more members, ms
    /// (Kafka's group.initial.rebalance.delay.ms) [default: 3000].
    group_initial_rebalance_delay_ms: u64,
    /// Smallest session timeout a consumer may ask for, ms [default: 6000].
    group_min_session_timeout_ms: u64,
    /// Largest session timeout a consumer may ask for, ms [default: 1800000].
    group_max_session_timeout_ms: u64,
    /// Most consumer groups one core coordinates [default: 10000].
    groups_per_core_max: usize,
    /// Most members in one consumer group [default: 1000].
    members_per_group_max: usize,
    /// Most bytes of protocol metadata in one JoinGroup and of one member's assignment
    /// [default: 1048576].
    group_metadata_bytes_max: usize,
    /// An idempotent producer idle this long is forgotten by each partition (Kafka's
    /// producer.id.expiration.ms), ms [default: 86400000].
    producer_id_expiration_ms: i64,
    /// Longest transaction timeout a transactional producer may ask for (Kafka's
    /// transaction.max.timeout.ms); a longer one is refused with INVALID_TRANSACTION_TIMEOUT,
    /// ms [default: 900000].
    transaction_max_timeout_ms: i32,
    /// A transactional id with no transaction open whose state has not changed for this long
    /// is forgotten by its coordinator (Kafka's transactional.id.expiration.ms), ms
    /// [default: 604800000].
    transactional_id_expiration_ms: i64,
    /// Most idempotent producers each partition tracks; a new one beyond it is refused with
    /// POLICY_VIOLATION until idle ones expire [default: 10000].
    producers_per_partition_max: usize,
    /// A follower that has not caught up with its leader for this long leaves the partition's
    /// in-sync replicas (Kafka's replica.lag.time.max.ms), ms [default: 30000].
    replica_lag_time_max_ms: u64,
    /// Caps the rate at which this broker, as a follower, fetches records for replicas a
    /// reassignment is adding (their catch-up), in bytes per second over the whole broker
    /// (shared evenly by its cores); 0 means unlimited. Kafka's
    /// follower.replication.throttled.rate for the moving replicas [default: 0].
    reassignment_throttle_bytes_per_sec: u64,
    /// How often each core logs its request-time percentiles per API (queue, handle, send) and
    /// its log append times, ms; 0 turns the lines off [default: 60000].
    stats_interval_ms: u64,
}

/// Spate: a Kafka-compatible event-streaming broker on io_uring, thread-per-core.
///
/// Every option can also be set in the TOML file given by --config (same name, e.g.
/// `segment-bytes = 1048576`) or in the environment (`SPATE_SEGMENT_BYTES=1048576`).
/// Precedence: command line, then the file, then the environment, then the default.
#[derive(Parser, Debug)]
#[command(name = "spate", version, about, long_about)]
pub struct Cli {
    /// TOML file with settings (keys are the option names without the leading dashes).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

/// The broker's configuration with every default applied and checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The admin listener's address; `None`: no admin listener.
    pub admin_listen: Option<SocketAddr>,
    pub advertised_host: String,
    pub advertised_port: u16,
    pub data_dir: PathBuf,
    pub cores: usize,
    pub node_id: i32,
    /// `Some` in a cluster of several brokers (`--controller-voters`).
    pub cluster: Option<ClusterSettings>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `None`: derive from RLIMIT_MEMLOCK at startup.
    pub io_memory_bytes: Option<usize>,
    /// Write-buffer budget per core (`None`: derived from the machine's memory at start).
    pub write_buffer_pool_bytes: Option<usize>,
    /// `None`: the kernel's default (each executor's own CPU).
    pub io_worker_cpus: Option<Vec<usize>>,
    pub frame_bytes_max: usize,
    pub connections_per_core_max: usize,
    pub auto_create_topics: bool,
    pub topic_defaults: TopicDefaults,
    pub cleaner: CleanerSettings,
    pub groups: GroupConfig,
    pub producer_id_expiration_ms: i64,
    pub producers_per_partition_max: usize,
    /// The transaction coordinators' settings.
    pub transactions: spate_txn::state::TxnConfig,
    /// Kafka's replica.lag.time.max.ms.
    pub replica_lag_time_max_ms: u64,
    /// Bytes per second the followers of this broker fetch for replicas being added by a
    /// reassignment, all cores together; `None`: unlimited.
    pub reassignment_throttle_bytes_per_sec: Option<u64>,
    /// How often request-time statistics are logged; `None`: never.
    pub stats_interval: Option<std::time::Duration>,
    /// `SPATE_*` environment variables that name no setting (logged at startup).
    pub ignored_env: Vec<String>,
}

/// How this broker joins a cluster of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// Where other brokers connect to this one.
    pub listen: SocketAddr,
    /// The host other brokers are told to reach the cluster listener at (registered with the
    /// controller): a voter's own `--controller-voters` host, else the listen address, or the
    /// advertised host when listening on all addresses.
    pub advertised_host: String,
    /// The controller quorum, by node id.
    pub voters: Vec<Voter>,
    /// Whether this broker votes in the quorum or only follows it.
    pub role: ClusterRole,
    /// Kafka's broker.session.timeout.ms (the controller fences a silent broker after it).
    pub session_timeout_ms: u64,
    /// Kafka's broker.heartbeat.interval.ms.
    pub heartbeat_interval_ms: u64,
}

/// A broker's part in the controller quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterRole {
    /// Its node id is in `--controller-voters`: it runs a Raft node of the metadata quorum.
    Voter,
    /// It is not: it fetches the committed metadata log from the voters (Kafka's KRaft
    /// observers), and is a broker like any other otherwise.
    Observer,
}

/// One voter of the controller quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// Its node id.
    pub node_id: i32,
    /// Its cluster listener's host.
    pub host: String,
    /// Its cluster listener's port.
    pub port: u16,
}

/// Most voters in a controller quorum: every commit waits for a majority of them, and Kafka
/// clusters run 3 or 5.
pub const VOTERS_MAX: usize = 9;

/// Parses `ID@HOST:PORT,...` (Kafka's `controller.quorum.voters` form) into voters sorted by
/// node id.
///
/// # Errors
/// If it is empty, an entry is malformed, an id is negative or repeated, or there are more
/// than [`VOTERS_MAX`].
pub fn parse_voters(text: &str) -> anyhow::Result<Vec<Voter>> {
    let mut voters = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, address) = entry
            .split_once('@')
            .with_context(|| format!("voter {entry:?} is not ID@HOST:PORT"))?;
        let node_id: i32 = id
            .trim()
            .parse()
            .with_context(|| format!("voter {entry:?}: {id:?} is not a node id"))?;
        if node_id < 0 {
            bail!("voter {entry:?}: node ids are not negative");
        }
        let (host, port) =
            parse_host_port(address.trim()).with_context(|| format!("voter {entry:?}"))?;
        voters.push(Voter {
            node_id,
            host,
            port,
        });
    }
    if voters.is_empty() {
        bail!("no voters in {text:?}");
    }
    if voters.len() > VOTERS_MAX {
        bail!("{} voters; at most {VOTERS_MAX}", voters.len());
    }
    voters.sort_by_key(|v| v.node_id);
    if let Some(pair) = voters.windows(2).find(|w| w[0].node_id == w[1].node_id) {
        bail!("node id {} names two voters", pair[0].node_id);
    }
    Ok(voters)
}

/// Checks the cluster settings against each other.
fn resolve_cluster(
    node_id: i32,
    listen: Option<SocketAddr>,
    voters: Option<&str>,
    advertised_host: &str,
) -> anyhow::Result<Option<ClusterSettings>> {
    let (listen, voters) = match (listen, voters) {
        (None, None) => return Ok(None),
        (Some(_), None) => bail!("cluster-listen needs controller-voters (the quorum to join)"),
        (None, Some(_)) => {
            bail!("controller-voters needs cluster-listen (where the other brokers reach this one)")
        }
        (Some(listen), Some(text)) => (listen, parse_voters(text).context("controller-voters")?),
    };
    let me = voters.iter().find(|v| v.node_id == node_id);
    // A voter's own address with another node id is far likelier a wrong --node-id than an
    // observer meant to take over that voter's port.
    if let (None, Some(taken)) = (
        me,
        voters
            .iter()
            .find(|v| v.port == listen.port() && v.host == listen.ip().to_string()),
    ) {
        bail!(
            "cluster-listen {listen} is voter {}'s address in controller-voters, but node-id is \
             {node_id}; a broker that is not a voter (an observer) needs an address of its own",
            taken.node_id
        );
    }
    let (role, advertised_host) = match me {
        Some(me) => {
            if me.port != listen.port() {
                bail!(
                    "controller-voters names {}:{} for node {node_id}, but its cluster-listen is {listen}",
                    me.host,
                    me.port
                );
            }
            (ClusterRole::Voter, me.host.clone())
        }
        // Not a voter: an observer. Its cluster address is registered with the controller, so
        // an unspecified listen address is replaced by the host clients are told.
        None if listen.ip().is_unspecified() => (ClusterRole::Observer, advertised_host.to_owned()),
        None => (ClusterRole::Observer, listen.ip().to_string()),
    };
    Ok(Some(ClusterSettings {
        listen,
        advertised_host,
        voters,
        role,
        session_timeout_ms: 9_000,
        heartbeat_interval_ms: 1_000,
    }))
}

/// Broker-wide defaults for per-topic settings.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    pub num_partitions: i32,
    /// Replicas of a topic created with replication factor -1.
    pub replication_factor: i16,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub max_message_bytes: usize,
    pub flush_mode: FlushMode,
    pub flush_interval_ms: u64,
    pub flush_bytes_max: u64,
    /// The topic config keys whose default was set on this broker (flag, file or environment)
    /// rather than left at Spate's own: DescribeConfigs reports them as STATIC_BROKER_CONFIG.
    pub set_on_broker: Vec<&'static str>,
}

/// The log cleaner of each core.
#[derive(Debug, Clone)]
pub struct CleanerSettings {
    pub io_bytes_per_second_max: u64,
    pub dedupe_bytes_max: usize,
    pub backoff_ms: u64,
}

/// Consumer group settings.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub offsets_partitions: i32,
    pub offsets_replication_factor: i16,
    pub groups_per_core_max: usize,
    pub limits: crate::group::state::GroupLimits,
}

/// Upper bound on `--cores`: far above any machine Spate runs on, low enough that a typo
/// (`--cores 1000000`) is refused instead of spawning a million threads.
pub const CORES_MAX: usize = 1024;
/// Upper bound on `--frame-bytes-max`: Kafka frames carry an i32 length.
pub const FRAME_BYTES_MAX_LIMIT: usize = i32::MAX as usize;

impl Config {
    /// Reads the command line, the config file it names and the environment.
    ///
    /// # Errors
    /// If the file cannot be read or parsed, an environment variable is unknown or malformed,
    /// or a value is out of range.
    pub fn load() -> anyhow::Result<Config> {
        let cli = Cli::parse();
        let file = match &cli.config {
            Some(path) => settings_from_file(path)?,
            None => Settings::default(),
        };
        let (env, ignored_env) = settings_from_env(std::env::vars())?;
        let mut config = Config::resolve(cli.settings.or(file).or(env))?;
        config.ignored_env = ignored_env;
        Ok(config)
    }

    /// Applies defaults to merged settings and checks them.
    ///
    /// # Errors
    /// If a value is out of range.
    pub fn resolve(s: Settings) -> anyhow::Result<Config> {
        let listen = s
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9092)));
        let (advertised_host, advertised_port) = match &s.advertised_listener {
            Some(text) => parse_host_port(text)?,
            None => (listen.ip().to_string(), listen.port()),
        };
        let admin_listen = parse_admin_listen(s.admin_listen.as_deref())?;
        let available = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = s.cores.unwrap_or(available);
        if cores == 0 || cores > CORES_MAX {
            bail!("cores must be between 1 and {CORES_MAX}, got {cores}");
        }
        let io_worker_cpus = match &s.io_worker_cpus {
            Some(text) => {
                Some(parse_cpu_list(text).with_context(|| format!("io-worker-cpus {text:?}"))?)
            }
            None => None,
        };
        let frame_bytes_max = s.frame_bytes_max.unwrap_or(100 * 1024 * 1024);
        if !(1024..=FRAME_BYTES_MAX_LIMIT).contains(&frame_bytes_max) {
            bail!("frame-bytes-max must be between 1024 and {FRAME_BYTES_MAX_LIMIT}, got {frame_bytes_max}");
        }
        if let Some(bytes) = s.write_buffer_pool_bytes {
            let min = spate_storage::pool::WRITE_BUFFER_BYTES_MIN;
            if bytes < min {
                bail!("write-buffer-pool-bytes must be at least {min}, got {bytes}");
            }
        }
        let num_partitions = s.num_partitions.unwrap_or(1);
        if num_partitions < 1 {
            bail!("num-partitions must be at least 1, got {num_partitions}");
        }
        let default_replication_factor = s.default_replication_factor.unwrap_or(1);
        if default_replication_factor < 1 {
            bail!(
                "default-replication-factor must be at least 1, got {default_replication_factor}"
            );
        }
        let segment_bytes = s.segment_bytes.unwrap_or(1 << 30);
        if segment_bytes < 4096 {
            bail!("segment-bytes must be at least 4096, got {segment_bytes}");
        }
        let connections_per_core_max = s.connections_per_core_max.unwrap_or(10_000);
        if connections_per_core_max == 0 {
            bail!("connections-per-core-max must be at least 1");
        }
        let cleaner = CleanerSettings {
            io_bytes_per_second_max: s.log_cleaner_io_max_bytes_per_second.unwrap_or(10 << 20),
            dedupe_bytes_max: s.log_cleaner_dedupe_buffer_bytes.unwrap_or(16 << 20),
            backoff_ms: s.log_cleaner_backoff_ms.unwrap_or(15_000),
        };
        if cleaner.io_bytes_per_second_max < 4096 {
            bail!("log-cleaner-io-max-bytes-per-second must be at least 4096");
        }
        if cleaner.dedupe_bytes_max < spate_storage::compaction::OFFSET_MAP_BYTES_MIN {
            bail!(
                "log-cleaner-dedupe-buffer-bytes must be at least {}",
                spate_storage::compaction::OFFSET_MAP_BYTES_MIN
            );
        }
        if cleaner.backoff_ms == 0 {
            bail!("log-cleaner-backoff-ms must be at least 1");
        }
        let offsets_partitions = s.offsets_topic_partitions.unwrap_or(50);
        if !(1..=crate::metadata::topics::PARTITIONS_PER_TOPIC_MAX).contains(&offsets_partitions) {
            bail!(
                "offsets-topic-partitions must be between 1 and {}, got {offsets_partitions}",
                crate::metadata::topics::PARTITIONS_PER_TOPIC_MAX
            );
        }
        let session_min = s.group_min_session_timeout_ms.unwrap_or(6_000);
        let session_max = s.group_max_session_timeout_ms.unwrap_or(1_800_000);
        if session_min > session_max || session_max > i32::MAX as u64 {
            bail!("group-min-session-timeout-ms {session_min} must not exceed group-max-session-timeout-ms {session_max} (at most {})", i32::MAX);
        }
        let offsets_replication_factor = s.offsets_topic_replication_factor.unwrap_or(3);
        if !(1..=spate_replication::messages::REPLICAS_MAX as i16)
            .contains(&offsets_replication_factor)
        {
            bail!(
                "offsets-topic-replication-factor must be between 1 and {}, got {offsets_replication_factor}",
                spate_replication::messages::REPLICAS_MAX
            );
        }
        let groups = GroupConfig {
            offsets_partitions,
            offsets_replication_factor,
            groups_per_core_max: s.groups_per_core_max.unwrap_or(10_000).max(1),
            limits: crate::group::state::GroupLimits {
                members_per_group_max: s.members_per_group_max.unwrap_or(1000).max(1),
                metadata_bytes_max: s.group_metadata_bytes_max.unwrap_or(1 << 20),
                session_timeout_ms_min: session_min,
                session_timeout_ms_max: session_max,
                initial_rebalance_delay_ms: s.group_initial_rebalance_delay_ms.unwrap_or(3_000),
            },
        };
        let producer_id_expiration_ms = s
            .producer_id_expiration_ms
            .unwrap_or(spate_storage::producer_state::PRODUCER_ID_EXPIRATION_MS_DEFAULT);
        if producer_id_expiration_ms < 1 {
            bail!("producer-id-expiration-ms must be at least 1, got {producer_id_expiration_ms}");
        }
        let defaults = spate_txn::state::TxnConfig::default();
        let transactions = spate_txn::state::TxnConfig {
            timeout_max_ms: s
                .transaction_max_timeout_ms
                .unwrap_or(defaults.timeout_max_ms),
            id_expiration_ms: s
                .transactional_id_expiration_ms
                .unwrap_or(defaults.id_expiration_ms),
            ..defaults
        };
        if transactions.timeout_max_ms < 1 {
            bail!(
                "transaction-max-timeout-ms must be at least 1, got {}",
                transactions.timeout_max_ms
            );
        }
        if transactions.id_expiration_ms < 1 {
            bail!(
                "transactional-id-expiration-ms must be at least 1, got {}",
                transactions.id_expiration_ms
            );
        }
        let node_id = s.node_id.unwrap_or(0);
        if node_id < 0 {
            bail!("node-id must not be negative, got {node_id}");
        }
        let mut cluster = resolve_cluster(
            node_id,
            s.cluster_listen,
            s.controller_voters.as_deref(),
            &advertised_host,
        )?;
        if let Some(cluster) = &mut cluster {
            cluster.session_timeout_ms = s.broker_session_timeout_ms.unwrap_or(9_000);
            cluster.heartbeat_interval_ms = s.broker_heartbeat_interval_ms.unwrap_or(1_000);
            if cluster.heartbeat_interval_ms == 0
                || cluster.heartbeat_interval_ms >= cluster.session_timeout_ms
            {
                bail!(
                    "broker-heartbeat-interval-ms ({}) must be at least 1 and below \
                     broker-session-timeout-ms ({})",
                    cluster.heartbeat_interval_ms,
                    cluster.session_timeout_ms
                );
            }
        }
        let producers_per_partition_max = s
            .producers_per_partition_max
            .unwrap_or(spate_storage::producer_state::PRODUCERS_PER_PARTITION_MAX_DEFAULT);
        if producers_per_partition_max == 0 {
            bail!("producers-per-partition-max must be at least 1");
        }
        let replica_lag_time_max_ms = s.replica_lag_time_max_ms.unwrap_or(30_000);
        if replica_lag_time_max_ms == 0 {
            bail!("replica-lag-time-max-ms must be at least 1");
        }
        let reassignment_throttle_bytes_per_sec = s
            .reassignment_throttle_bytes_per_sec
            .filter(|rate| *rate > 0);
        Ok(Config {
            cleaner,
            groups,
            replica_lag_time_max_ms,
            reassignment_throttle_bytes_per_sec,
            producer_id_expiration_ms,
            producers_per_partition_max,
            transactions,
            stats_interval: match s.stats_interval_ms.unwrap_or(60_000) {
                0 => None,
                ms => Some(std::time::Duration::from_millis(ms)),
            },
            listen,
            admin_listen,
            advertised_host,
            advertised_port,
            data_dir: s.data_dir.unwrap_or_else(|| PathBuf::from("./spate-data")),
            cores,
            node_id,
            cluster,
            log_format: s.log_format.unwrap_or(LogFormat::Human),
            log_level: s.log_level.unwrap_or_else(|| "info".to_owned()),
            io_memory_bytes: s.io_memory_bytes,
            write_buffer_pool_bytes: s.write_buffer_pool_bytes,
            io_worker_cpus,
            frame_bytes_max,
            connections_per_core_max,
            ignored_env: Vec::new(),
            auto_create_topics: s.auto_create_topics.unwrap_or(true),
            topic_defaults: TopicDefaults {
                num_partitions,
                replication_factor: default_replication_factor,
                retention_ms: s.retention_ms.unwrap_or(7 * 24 * 3_600_000),
                retention_bytes: s.retention_bytes.unwrap_or(-1),
                segment_bytes,
                segment_ms: s.segment_ms.unwrap_or(7 * 24 * 3_600_000),
                max_message_bytes: s.max_message_bytes.unwrap_or(1_048_588),
                flush_mode: s.flush_mode.unwrap_or(FlushMode::Group),
                flush_interval_ms: s.flush_interval_ms.unwrap_or(5),
                // 64 MiB: at 1 GB/s a 5 ms interval already syncs every ~5 MB; 4 MiB added a
                // sync per 4 MiB and cut 1 KiB produce from ~1M to ~0.7M msg/s (benchmarks.md).
                flush_bytes_max: s.flush_bytes_max.unwrap_or(64 << 20),
                set_on_broker: [
                    ("retention.ms", s.retention_ms.is_some()),
                    ("retention.bytes", s.retention_bytes.is_some()),
                    ("segment.bytes", s.segment_bytes.is_some()),
                    ("segment.ms", s.segment_ms.is_some()),
                    ("max.message.bytes", s.max_message_bytes.is_some()),
                    ("flush.policy", s.flush_mode.is_some()),
                    ("flush.ms", s.flush_interval_ms.is_some()),
                    ("flush.bytes", s.flush_bytes_max.is_some()),
                ]
                .into_iter()
                .filter_map(|(key, set)| set.then_some(key))
                .collect(),
            },
        })
    }
}

/// The admin listener's default address: Redpanda's admin port, on loopback only, since the
/// endpoints need no credentials.
pub const ADMIN_LISTEN_DEFAULT: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9644);

/// `--admin-listen`: an address, or `none` (also `off` or empty) for no admin listener.
fn parse_admin_listen(text: Option<&str>) -> anyhow::Result<Option<SocketAddr>> {
    match text.map(str::trim) {
        None => Ok(Some(ADMIN_LISTEN_DEFAULT)),
        Some("" | "none" | "off") => Ok(None),
        Some(text) => text.parse().map(Some).with_context(|| {
            format!("admin-listen must be host:port (an IP address) or none, got {text:?}")
        }),
    }
}

/// Highest CPU number a CPU list may name, plus one: the size of the kernel's `cpu_set_t` that
/// the broker hands over (glibc's `CPU_SETSIZE`).
pub const CPU_LIST_CPUS_MAX: usize = 1024;

/// Parses a CPU list in the kernel's format (`0`, `2,3`, `2-5,8`) into sorted distinct CPUs.
///
/// # Errors
/// If it is empty, a number is malformed or not below [`CPU_LIST_CPUS_MAX`], or a range runs
/// backwards.
pub fn parse_cpu_list(text: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (first, last) = match part.split_once('-') {
            Some((first, last)) => (first.trim(), last.trim()),
            None => (part, part),
        };
        let cpu = |number: &str| -> anyhow::Result<usize> {
            let cpu: usize = number
                .parse()
                .with_context(|| format!("{number:?} is not a CPU number"))?;
            if cpu >= CPU_LIST_CPUS_MAX {
                bail!("CPU {cpu} is not below {CPU_LIST_CPUS_MAX}");
            }
            Ok(cpu)
        };
        let (first, last) = (cpu(first)?, cpu(last)?);
        if first > last {
            bail!("range {part:?} runs backwards");
        }
        cpus.extend(first..=last);
    }
    cpus.sort_unstable();
    cpus.dedup();
    assert!(!cpus.is_empty(), "every part adds at least one CPU");
    Ok(cpus)
}

fn parse_host_port(text: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("advertised-listener must be host:port, got {text:?}"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("bad port in advertised-listener {text:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("advertised-listener has an empty host: {text:?}");
    }
    Ok((host.to_owned(), port))
}

fn settings_from_file(path: &std::path::Path) -> anyhow::Result<Settings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// Builds settings from `SPATE_*` variables: `SPATE_SEGMENT_BYTES=5` becomes the TOML key
/// `segment-bytes = 5`, so values parse exactly as in the file. Variables that name no setting
/// are returned, not refused: the environment is shared with other tools (test harnesses set
/// `SPATE_BIN` and the like), unlike the config file, where an unknown key is an error. The
/// caller logs them, so a misspelt setting is still visible.
fn settings_from_env(
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<(Settings, Vec<String>)> {
    let mut table = toml::Table::new();
    let mut ignored = Vec::new();
    for (name, value) in vars {
        let Some(key) = name.strip_prefix("SPATE_") else {
            continue;
        };
        let key = key.to_ascii_lowercase();
        if !Settings::KEYS.contains(&key.as_str()) {
            ignored.push(name);
            continue;
        }
        // Numbers and booleans parse as TOML scalars; anything else is taken as a string.
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_table() && !v.is_array())
            .unwrap_or(toml::Value::String(value));
        table.insert(key.replace('_', "-"), parsed);
    }
    let settings = Settings::deserialize(toml::Value::Table(table))
        .context("reading SPATE_* environment variables")?;
    Ok((settings, ignored))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn admin_listen_defaults_to_loopback_9644_and_can_be_turned_off() {
        let admin = |text: Option<&str>| {
            Config::resolve(Settings {
                admin_listen: text.map(str::to_owned),
                ..Settings::default()
            })
            .map(|c| c.admin_listen)
        };
        assert_eq!(
            admin(None).unwrap(),
            Some("127.0.0.1:9644".parse().unwrap())
        );
        assert_eq!(admin(Some("none")).unwrap(), None);
        assert_eq!(
            admin(Some("0.0.0.0:0")).unwrap(),
            Some("0.0.0.0:0".parse().unwrap())
        );
        assert!(admin(Some("localhost")).is_err());
    }

    #[test]
    fn defaults_work_out_of_the_box() {
        let config = Config::resolve(Settings::default()).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(config.advertised_host, "127.0.0.1");
        assert_eq!(config.advertised_port, 9092);
        assert_eq!(config.data_dir, PathBuf::from("./spate-data"));
        assert_eq!(config.frame_bytes_max, 100 * 1024 * 1024);
        assert_eq!(config.topic_defaults.num_partitions, 1);
        assert_eq!(config.topic_defaults.flush_mode, FlushMode::Group);
        assert!(config.topic_defaults.set_on_broker.is_empty());
        assert!(config.auto_create_topics);
    }

    #[test]
    fn flag_beats_file_beats_environment() {
        let flags = Settings {
            segment_bytes: Some(10_000),
            ..Settings::default()
        };
        let file: Settings = toml::from_str("segment-bytes = 20000\nnum-partitions = 3\n").unwrap();
        let (environment, ignored) = settings_from_env(env(&[
            ("SPATE_SEGMENT_BYTES", "30000"),
            ("SPATE_NUM_PARTITIONS", "4"),
            ("SPATE_FLUSH_MODE", "every-append"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        assert!(ignored.is_empty());
        let config = Config::resolve(flags.or(file).or(environment)).unwrap();
        assert_eq!(config.topic_defaults.segment_bytes, 10_000);
        assert_eq!(config.topic_defaults.num_partitions, 3);
        assert_eq!(config.topic_defaults.flush_mode, FlushMode::EveryAppend);
        assert_eq!(
            config.topic_defaults.set_on_broker,
            vec!["segment.bytes", "flush.policy"]
        );
    }

    #[test]
    fn unknown_file_keys_are_errors_and_unknown_env_vars_are_reported() {
        assert!(toml::from_str::<Settings>("segment-byte = 1\n").is_err());
        let (settings, ignored) =
            settings_from_env(env(&[("SPATE_SEGMENT_BYTE", "1"), ("SPATE_BIN", "/x")])).unwrap();
        assert_eq!(settings.segment_bytes, None);
        assert_eq!(ignored, vec!["SPATE_SEGMENT_BYTE", "SPATE_BIN"]);
        // A known variable with a bad value is still an error.
        assert!(settings_from_env(env(&[("SPATE_CORES", "many")])).is_err());
    }

    #[test]
    fn environment_values_parse_like_file_values() {
        let (s, _) = settings_from_env(env(&[
            ("SPATE_LISTEN", "0.0.0.0:19092"),
            ("SPATE_AUTO_CREATE_TOPICS", "false"),
            ("SPATE_DATA_DIR", "/var/lib/spate"),
        ]))
        .unwrap();
        assert_eq!(s.listen, Some("0.0.0.0:19092".parse().unwrap()));
        assert_eq!(s.auto_create_topics, Some(false));
        assert_eq!(s.data_dir, Some(PathBuf::from("/var/lib/spate")));
    }

    #[test]
    fn cpu_lists_parse_like_the_kernels() {
        assert_eq!(parse_cpu_list("1").unwrap(), vec![1]);
        assert_eq!(parse_cpu_list("2,3").unwrap(), vec![2, 3]);
        assert_eq!(parse_cpu_list("0, 2-4 ,3").unwrap(), vec![0, 2, 3, 4]);
        assert_eq!(parse_cpu_list("1023").unwrap(), vec![1023]);
        for bad in [
            "",
            ",",
            "a",
            "1-",
            "-1",
            "3-2",
            "1024",
            "0-1024",
            "1,,2",
            "99999999999999999999",
        ] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} accepted");
        }
        let config = Config::resolve(Settings {
            io_worker_cpus: Some("1-2".to_owned()),
            ..Settings::default()
        })
        .unwrap();
        assert_eq!(config.io_worker_cpus, Some(vec![1, 2]));
        assert_eq!(
            Config::resolve(Settings::default()).unwrap().io_worker_cpus,
            None
        );
        let error = Config::resolve(Settings {
            io_worker_cpus: Some("4-1".to_owned()),
            ..Settings::default()
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("io-worker-cpus"), "{error:#}");
    }

    #[test]
    fn advertised_listener_is_separate_from_bind_address() {
        let s = Settings {
            listen: Some("0.0.0.0:9092".parse().unwrap()),
            advertised_listener: Some("broker-1.example:19092".to_owned()),
            ..Settings::default()
        };
        let config = Config::resolve(s).unwrap();
        assert_eq!(config.advertised_host, "broker-1.example");
        assert_eq!(config.advertised_port, 19092);
        assert!(parse_host_port("nohost").is_err());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for s in [
            Settings {
                cores: Some(0),
                ..Settings::default()
            },
            Settings {
                frame_bytes_max: Some(10),
                ..Settings::default()
            },
            Settings {
                num_partitions: Some(0),
                ..Settings::default()
            },
        ] {
            assert!(Config::resolve(s).is_err());
        }
    }

    #[test]
    fn voters_parse_like_kafkas_quorum_voters() {
        let voters = parse_voters("3@c:9194, 1@a:9192,2@[::1]:9193").unwrap();
        let ids: Vec<i32> = voters.iter().map(|v| v.node_id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!((voters[1].host.as_str(), voters[1].port), ("::1", 9193));
        for bad in [
            "",
            "1@a",
            "a@b:1",
            "-1@a:1",
            "1@a:1,1@b:2",
            "1@a:99999",
            "0@a:1,1@a:1,2@a:1,3@a:1,4@a:1,5@a:1,6@a:1,7@a:1,8@a:1,9@a:1",
        ] {
            assert!(parse_voters(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cluster_settings_must_agree_with_each_other() {
        let with = |node: i32, listen: Option<&str>, voters: Option<&str>| {
            Config::resolve(Settings {
                node_id: Some(node),
                cluster_listen: listen.map(|l| l.parse().unwrap()),
                controller_voters: voters.map(str::to_owned),
                ..Settings::default()
            })
        };
        let voters = "1@127.0.0.1:9192,2@127.0.0.1:9193,3@127.0.0.1:9194";
        let config = with(2, Some("127.0.0.1:9193"), Some(voters)).unwrap();
        let cluster = config.cluster.expect("cluster mode");
        assert_eq!(cluster.voters.len(), 3);
        assert_eq!(cluster.listen.port(), 9193);
        assert_eq!(cluster.role, ClusterRole::Voter);
        let observer = with(4, Some("127.0.0.1:9195"), Some(voters)).unwrap();
        let observer = observer.cluster.expect("cluster mode");
        assert_eq!(observer.role, ClusterRole::Observer);
        assert_eq!(observer.advertised_host, "127.0.0.1");
        let error = with(4, Some("127.0.0.1:9193"), Some(voters)).unwrap_err();
        assert!(
            format!("{error:#}").contains("voter 2's address"),
            "an observer on a voter's address: {error:#}"
        );
        assert!(
            with(0, None, None).unwrap().cluster.is_none(),
            "a single broker"
        );
        assert!(
            with(2, Some("127.0.0.1:9193"), None).is_err(),
            "listener alone"
        );
        assert!(with(2, None, Some(voters)).is_err(), "voters alone");
        assert!(
            with(2, Some("127.0.0.1:9999"), Some(voters)).is_err(),
            "port disagrees"
        );
        assert!(with(-1, None, None).is_err(), "negative node id");
    }
}
