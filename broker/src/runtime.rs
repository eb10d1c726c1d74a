//! Thread-per-core runtime: one pinned glommio executor per core, a signal thread, and the
//! shutdown sequence.
//!
//! The only state shared between executors is the shutdown flag below (control plane, read on a
//! timer, never on the data path). Everything a core serves is owned by that core.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::server;

/// Largest io_memory per executor we ask glommio for, even with an unlimited RLIMIT_MEMLOCK:
/// registered buffers serve disk reads and writes of the size the storage engine issues, and a
/// few MiB cover many in-flight DMA operations per core.
pub const IO_MEMORY_BYTES_MAX: usize = 8 << 20;
/// glommio registers each executor's io_memory on three rings (main, latency, poll).
const IO_MEMORY_RINGS: usize = 3;
/// Share of RLIMIT_MEMLOCK given to registered buffers; the rest covers what else gets locked
/// (ring memory on older kernels, other registrations). Measured here: with 8 MiB and two
/// executors, 1 MiB each registered and 1.25 MiB each did not.
const MEMLOCK_SHARE_PERCENT: usize = 75;
/// Registered buffers are carved in pages; round budgets down to this.
const IO_MEMORY_GRANULE_BYTES: usize = 64 << 10;
/// How long startup waits for a listener on its port to go away (a process just killed).
const PORT_CHECK_GRACE: Duration = Duration::from_secs(2);
/// Longest a shutdown may take before the process exits anyway: drain (10 s), the cores'
/// barrier (10 s) and closing logs, with room to spare.
const SHUTDOWN_WATCHDOG: Duration = Duration::from_secs(30);
/// Exit status of a shutdown cut short by the watchdog or a second signal.
const EXIT_SHUTDOWN_FORCED: i32 = 2;
/// How often executors look at the shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);

/// The soft RLIMIT_MEMLOCK in bytes, or `None` when unlimited.
pub fn memlock_limit_bytes() -> anyhow::Result<Option<usize>> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and touches nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("getrlimit(RLIMIT_MEMLOCK)");
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        return Ok(None);
    }
    Ok(Some(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)))
}

/// Open files a broker with many partitions needs, at least, before it warns: each open
/// partition keeps its active segment and sealed segments open (and sockets count too), so the
/// common soft limit of 1024 runs out at a few hundred partitions.
pub const NOFILE_WANTED_MIN: u64 = 65_536;

/// What raising the soft RLIMIT_NOFILE did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NofileLimit {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub now: u64,
    /// The hard limit (the most an unprivileged process may raise its soft limit to).
    pub hard: u64,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, as Kafka's start scripts and systemd units
/// ask operators to: thousands of partitions keep thousands of segment files open.
///
/// # Errors
/// If getrlimit or setrlimit fails.
pub fn raise_nofile_limit() -> std::io::Result<NofileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and touches nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we pass and touches nothing else.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(NofileLimit {
        before,
        now: limit.rlim_max,
        hard: limit.rlim_max,
    })
}

/// Share of the machine's memory the write-buffer budgets take by default, all cores together.
const WRITE_BUFFER_POOL_MEMORY_DIVISOR: u64 = 64;
/// Bounds of the default write-buffer budget per core (the tail caches get a quarter of it):
/// the floor holds one busy partition's 1 MiB buffer, its eight queued writes and spares; the
/// cap keeps a two-core broker with a thousand busy partitions under 256 MiB (2 x 80 MiB of
/// budgets). At 32 MiB, 128 partitions written at full speed on two cores got a third less
/// throughput than with an unbounded budget (buffers of a few KiB, appends waiting for their
/// own writes); at 64 MiB the rate is that of the unbounded budget (docs/benchmarks.md).
const WRITE_BUFFER_POOL_BYTES_DEFAULT_MIN: usize = 12 << 20;
const WRITE_BUFFER_POOL_BYTES_DEFAULT_MAX: usize = 64 << 20;

/// The tail caches' budget per core for a write-buffer budget of `write_buffer_pool` bytes:
/// a quarter of it. A larger cache budget (as large as the write budget) did not speed up 128
/// partitions read while written (consumers read recent batches), but its memory is resident:
/// the caches pin the producers' request buffers, and with 1,000 partitions written the broker
/// went over 256 MiB with caches half the write budget.
pub fn tail_cache_budget_bytes(write_buffer_pool: usize) -> usize {
    write_buffer_pool / 4
}

/// The default write-buffer budget per core: 1/64 of `memory_bytes` (the machine's memory, if
/// known) shared by `cores`, within 12-64 MiB per core.
pub fn write_buffer_pool_default_bytes(memory_bytes: Option<u64>, cores: usize) -> usize {
    assert!(cores > 0);
    let Some(memory) = memory_bytes else {
        return WRITE_BUFFER_POOL_BYTES_DEFAULT_MIN;
    };
    let share = memory / WRITE_BUFFER_POOL_MEMORY_DIVISOR / cores as u64;
    usize::try_from(share).unwrap_or(usize::MAX).clamp(
        WRITE_BUFFER_POOL_BYTES_DEFAULT_MIN,
        WRITE_BUFFER_POOL_BYTES_DEFAULT_MAX,
    )
}

/// The machine's memory (MemTotal of /proc/meminfo), if it can be read.
fn memory_total_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// io_memory per executor that fits `cores` executors into the locked-memory limit.
pub fn io_memory_budget_bytes(memlock_limit_bytes: Option<usize>, cores: usize) -> usize {
    assert!(cores > 0);
    let Some(limit) = memlock_limit_bytes else {
        return IO_MEMORY_BYTES_MAX;
    };
    let usable = (limit as u128 * MEMLOCK_SHARE_PERCENT as u128 / 100) as usize;
    let share = usable / (IO_MEMORY_RINGS * cores);
    let rounded = share / IO_MEMORY_GRANULE_BYTES * IO_MEMORY_GRANULE_BYTES;
    rounded.clamp(IO_MEMORY_GRANULE_BYTES, IO_MEMORY_BYTES_MAX)
}

/// Fails if a socket already listens on `addr`'s port (on that address or a wildcard).
///
/// glommio binds with SO_REUSEPORT, which would let a second broker of the same user share the
/// port silently and split clients between the two. A test bind cannot tell a listening broker
/// from the TIME-WAIT leftovers of a killed one (those carry SO_REUSEPORT too and make a
/// plain bind fail for a minute), so this reads the kernel's socket tables instead: only a
/// socket in LISTEN state counts.
fn check_port_free(addr: std::net::SocketAddr) -> std::io::Result<()> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = match std::fs::read_to_string(table) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if let Some(holder) = listening_on(&text, addr) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("a socket already listens on {holder} (another broker?)"),
            ));
        }
    }
    Ok(())
}

/// The local address of a LISTEN socket in a /proc/net/tcp{,6} table that conflicts with
/// `addr`: same port, and the same address or either side a wildcard.
fn listening_on(table: &str, addr: std::net::SocketAddr) -> Option<String> {
    const TCP_LISTEN: &str = "0A";
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
            continue;
        };
        if *state != TCP_LISTEN {
            continue;
        }
        let Some((ip_hex, port_hex)) = local.split_once(':') else {
            continue;
        };
        if u16::from_str_radix(port_hex, 16).ok() != Some(addr.port()) {
            continue;
        }
        let listener_wildcard = ip_hex.bytes().all(|b| b == b'0');
        let conflicts =
            listener_wildcard || addr.ip().is_unspecified() || hex_ip_matches(ip_hex, addr.ip());
        if conflicts {
            return Some(format!("{ip_hex}:{}", addr.port()));
        }
    }
    None
}

/// Whether a /proc/net/tcp address (hex of the address bytes as the kernel stores them, in
/// host order 32-bit words) is `ip`.
fn hex_ip_matches(hex: &str, ip: std::net::IpAddr) -> bool {
    let octets: Vec<u8> = match ip {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    if hex.len() != octets.len() * 2 {
        return false;
    }
    // The kernel prints each 32-bit word of the address as a native-endian integer.
    let mut expected = String::with_capacity(hex.len());
    for word in octets.chunks(4) {
        let value = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
        expected.push_str(&format!("{value:08X}"));
    }
    expected.eq_ignore_ascii_case(hex)
}

/// CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// Set once by the signal thread; read by every executor on a timer. Also the two barriers
/// of a core's life: no core accepts clients before every core has recovered its partitions
/// (a connection on one core may ask about another's), and no core stops answering other cores
/// before every core has drained its connections (one may wait for a reply from another).
#[derive(Debug, Default)]
pub struct ShutdownFlag {
    triggered: AtomicBool,
    /// Why the broker stops on its own (a failed data dir), if it does: the process then exits
    /// non-zero with this message after the usual controlled shutdown.
    failure: std::sync::OnceLock<String>,
    loaded_cores: std::sync::atomic::AtomicUsize,
    drained_cores: std::sync::atomic::AtomicUsize,
}

impl ShutdownFlag {
    /// Asks every core to stop accepting and drain.
    pub fn trigger(&self) {
        self.triggered.store(true, Ordering::Release);
    }

    /// Stops the broker because it cannot go on serving (`reason`, logged by the caller): the
    /// same drain as a signal's, then a non-zero exit. The first reason is kept.
    pub fn fail(&self, reason: String) {
        let _ = self.failure.set(reason);
        self.trigger();
    }

    /// The reason given to [`ShutdownFlag::fail`], if any.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Whether shutdown was asked for.
    pub fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::Acquire)
    }

    /// Records that one more core has recovered its partitions.
    pub fn core_loaded(&self) {
        self.loaded_cores.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether `cores` cores have recovered their partitions.
    pub fn all_loaded(&self, cores: usize) -> bool {
        self.loaded_cores.load(Ordering::Acquire) >= cores
    }

    /// Records that one more core has no connections left.
    pub fn core_drained(&self) {
        self.drained_cores.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether `cores` cores have drained.
    pub fn all_drained(&self, cores: usize) -> bool {
        self.drained_cores.load(Ordering::Acquire) >= cores
    }

    /// Resolves once shutdown was asked for.
    pub async fn wait(&self) {
        while !self.is_triggered() {
            glommio::timer::sleep(SHUTDOWN_POLL).await;
        }
    }
}

/// Starts every core and blocks until they have all stopped.
///
/// # Errors
/// If an executor cannot be started or a core fails to start serving.
pub fn run(config: Config) -> anyhow::Result<()> {
    // Before anything touches the data dir: a bad CPU is a configuration error.
    if let Some(worker_cpus) = &config.io_worker_cpus {
        check_online(worker_cpus).context("io-worker-cpus")?;
    }
    match raise_nofile_limit() {
        Ok(limit) if limit.now < NOFILE_WANTED_MIN => warn!(
            soft_before = limit.before,
            soft_now = limit.now,
            hard = limit.hard,
            "RLIMIT_NOFILE is low: each partition keeps its segment files open, so a broker with \
             many partitions will fail to open files (raise the hard limit: ulimit -Hn, or \
             LimitNOFILE= in a systemd unit)"
        ),
        Ok(limit) => info!(
            soft_before = limit.before,
            soft_now = limit.now,
            "open file limit raised to the hard limit"
        ),
        Err(e) => warn!(
            error = %e,
            "could not raise RLIMIT_NOFILE to its hard limit: a broker with many partitions may \
             fail to open files"
        ),
    }
    let write_buffer_pool = config
        .write_buffer_pool_bytes
        .unwrap_or_else(|| write_buffer_pool_default_bytes(memory_total_bytes(), config.cores));
    info!(
        write_buffer_bytes_per_core = write_buffer_pool,
        tail_cache_bytes_per_core = tail_cache_budget_bytes(write_buffer_pool),
        "write buffer and tail cache budgets per core (write-buffer-pool-bytes)"
    );
    let memlock = memlock_limit_bytes()?;
    let io_memory = config
        .io_memory_bytes
        .unwrap_or_else(|| io_memory_budget_bytes(memlock, config.cores));
    info!(
        cores = config.cores,
        io_memory_bytes_per_core = io_memory,
        locked_bytes_total = io_memory * IO_MEMORY_RINGS * config.cores,
        // Absent when unlimited.
        memlock_limit_bytes = memlock.map(|b| b as u64),
        "registered buffer budget"
    );
    if let Some(limit) = memlock {
        if io_memory * IO_MEMORY_RINGS * config.cores > limit {
            warn!("io-memory-bytes exceeds RLIMIT_MEMLOCK: glommio will run without registered buffers (see tuning/README.md)");
        }
    }

    // A broker killed a moment ago may still show its listener while the kernel tears the
    // process down: give that a little time before calling the port taken.
    let mut port_check = check_port_free(config.listen);
    let check_started = std::time::Instant::now();
    while port_check.is_err() && check_started.elapsed() < PORT_CHECK_GRACE {
        std::thread::sleep(Duration::from_millis(50));
        port_check = check_port_free(config.listen);
    }
    port_check.with_context(|| format!("listen address {} is not available", config.listen))?;

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    // glommio opens directories (for fsync) with openat(-1, path), which fails with EBADF on a
    // relative path; the default data dir is relative, so make it absolute once here.
    let mut config = config;
    config.data_dir = std::fs::canonicalize(&config.data_dir)
        .with_context(|| format!("resolving data dir {}", config.data_dir.display()))?;
    // Before anything reads or writes the data dir: a second broker on it would lose the first
    // one's acknowledged records. Held until the process exits.
    let _data_dir_lock = crate::data_dir_lock::DataDirLock::acquire(&config.data_dir)?;
    if config.cluster.is_none() {
        crate::group::ensure_offsets_topic(&mut config)?;
    } else {
        // A single broker's topics live in topic files; a cluster's in its metadata log. Taking
        // such a data dir into a cluster is not supported yet: refuse it rather than hide them.
        let existing = crate::metadata::topics::load_all(&config.data_dir)?;
        if !existing.is_empty() {
            anyhow::bail!(
                "data dir {} holds {} topics of a single broker; moving a single broker's data \
                 into a cluster (--controller-voters) is not supported yet",
                config.data_dir.display(),
                existing.len()
            );
        }
    }

    // Bound here, by std, without SO_REUSEPORT: a second broker on the same admin port must
    // fail now with a clear message, not share the port (see `admin`). Core 0 serves it.
    let mut admin_listener = match config.admin_listen {
        Some(addr) => Some(std::net::TcpListener::bind(addr).with_context(|| {
            format!(
                "admin-listen {addr} is not available (another broker? give each broker its \
                 own --admin-listen, or --admin-listen none)"
            )
        })?),
        None => None,
    };

    let shutdown = Arc::new(ShutdownFlag::default());
    spawn_signal_thread(shutdown.clone())?;

    let cpus = allowed_cpus();
    if !cpus.is_empty() && config.cores > cpus.len() {
        warn!(
            cores = config.cores,
            cpus = cpus.len(),
            "more cores than CPUs: executors will share CPUs"
        );
    }
    let config = Arc::new(config);
    let mesh = (config.cores > 1).then(|| crate::mesh::builder(config.cores));
    let mut handles = Vec::with_capacity(config.cores);
    for core in 0..config.cores {
        let placement = match cpus.get(core % cpus.len().max(1)) {
            Some(&cpu) => Placement::Fixed(cpu),
            None => Placement::Unbound,
        };
        let config = config.clone();
        let shutdown = shutdown.clone();
        let mesh = mesh.clone();
        let admin = if core == crate::core::CONTROLLER_CORE {
            admin_listener.take()
        } else {
            None
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("spate-core-{core}"))
            .io_memory(io_memory)
            .spawn(move || async move {
                spate_storage::pool::set_budget_bytes(write_buffer_pool);
                spate_storage::pool::set_cache_budget_bytes(tail_cache_budget_bytes(
                    write_buffer_pool,
                ));
                if let Some(cpus) = &config.io_worker_cpus {
                    if let Err(error) = set_io_worker_cpus(cpus) {
                        shutdown.trigger();
                        return Err(anyhow::anyhow!(
                            "io-worker-cpus {cpus:?} on core {core}: {error} (the CPUs must be \
                             in the broker's cpuset, and the kernel 5.14 or newer)"
                        ));
                    }
                    info!(core, ?cpus, "io_uring workers moved");
                }
                let result = server::serve_core(config, mesh, admin, shutdown.clone()).await;
                if result.is_err() {
                    // The other cores may be waiting at a barrier for this one.
                    shutdown.trigger();
                }
                result
            })
            .map_err(|error| anyhow::anyhow!("starting executor for core {core}: {error}"))?;
        handles.push(handle);
    }
    let mut first_error = None;
    for (core, handle) in handles.into_iter().enumerate() {
        let result = match handle.join() {
            Ok(result) => result,
            Err(error) => Err(anyhow::anyhow!("executor of core {core} failed: {error}")),
        };
        if let Err(error) = result {
            // One core failing stops the others: a broker serving part of its partitions is
            // worse than a broker that restarts.
            shutdown.trigger();
            first_error.get_or_insert(error);
        }
    }
    if let (None, Some(reason)) = (&first_error, shutdown.failure()) {
        first_error = Some(anyhow::anyhow!("{reason}"));
    }
    match first_error {
        Some(error) => Err(error),
        None => {
            info!("all cores stopped; exiting");
            Ok(())
        }
    }
}

/// Fails unless every CPU of `cpus` is online. The kernel cuts the set given to
/// `IORING_REGISTER_IOWQ_AFF` to its own CPU count without an error, so a CPU number beyond it
/// would leave the workers an empty set: no fdatasync would ever complete.
fn check_online(cpus: &[usize]) -> anyhow::Result<()> {
    const ONLINE: &str = "/sys/devices/system/cpu/online";
    let text = std::fs::read_to_string(ONLINE).with_context(|| format!("reading {ONLINE}"))?;
    let online = crate::config::parse_cpu_list(text.trim())
        .with_context(|| format!("parsing {ONLINE}: {:?}", text.trim()))?;
    if let Some(cpu) = cpus.iter().find(|cpu| !online.contains(cpu)) {
        anyhow::bail!("CPU {cpu} is not online (online: {})", text.trim());
    }
    Ok(())
}

/// `IORING_REGISTER_IOWQ_AFF` (Linux 5.14): sets the CPUs of the calling thread's io_uring
/// workers.
const IORING_REGISTER_IOWQ_AFF: libc::c_uint = 17;
const _: () = assert!(crate::config::CPU_LIST_CPUS_MAX <= libc::CPU_SETSIZE as usize);
/// The link `/proc/self/fd/N` of an io_uring instance points to.
const IO_URING_FD_LINK: &str = "anon_inode:[io_uring]";

/// Moves the io_uring worker threads of the calling executor thread to `cpus`.
///
/// The kernel keeps one worker pool per thread that submits to io_uring (not per ring), and it
/// runs there what cannot complete inline: every fdatasync, and the direct writes it could not
/// start without blocking. Those workers start on the submitting thread's CPU, so on
/// a broker core they take time from the executor; this is the only way to move them, since
/// kernel threads of a process cannot be re-pinned from outside. glommio does not expose its
/// rings, so the ring named in the call is any of the process's (found in `/proc/self/fd`): the
/// registration changes the caller's pool whatever ring it names.
///
/// # Errors
/// If no ring is open yet, or the kernel refuses the CPU set (offline CPUs, CPUs outside the
/// broker's cpuset, or a kernel before 5.14).
fn set_io_worker_cpus(cpus: &[usize]) -> std::io::Result<()> {
    assert!(!cpus.is_empty());
    let ring_fd = std::fs::read_dir("/proc/self/fd")?
        .filter_map(Result::ok)
        .find(|entry| {
            std::fs::read_link(entry.path())
                .is_ok_and(|target| target.as_os_str() == IO_URING_FD_LINK)
        })
        .and_then(|entry| entry.file_name().to_str()?.parse::<libc::c_int>().ok())
        .ok_or_else(|| std::io::Error::other("no io_uring instance open in this process"))?;
    // SAFETY: cpu_set_t is plain data, zero is a valid (empty) set, and CPU_SET is given
    // numbers below CPU_SETSIZE (config::parse_cpu_list checks it).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        assert!(cpu < crate::config::CPU_LIST_CPUS_MAX);
        // SAFETY: see above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: the kernel reads `size_of::<cpu_set_t>()` bytes from a live, initialized set and
    // writes nothing back for this opcode.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd,
            IORING_REGISTER_IOWQ_AFF,
            std::ptr::from_ref(&set),
            std::mem::size_of::<libc::cpu_set_t>(),
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn spawn_signal_thread(shutdown: Arc<ShutdownFlag>) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("spate-signals".to_owned())
        .spawn(move || {
            let Some(signal) = signals.forever().next() else {
                return;
            };
            info!(signal, "shutdown requested: draining connections");
            shutdown.trigger();
            // A shutdown that never finishes must not leave a process that ignores SIGTERM
            // (seen once after heavy load: a core asleep in io_uring with the flag set). After
            // the watchdog, or on a second signal, exit non-zero with a log line; data that was
            // acknowledged with acks=all is durable already, the rest is as after a crash.
            let started = std::time::Instant::now();
            while started.elapsed() < SHUTDOWN_WATCHDOG {
                if let Some(again) = signals.pending().next() {
                    error!(signal = again, "second signal during shutdown: exiting now");
                    std::process::exit(EXIT_SHUTDOWN_FORCED);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            error!(
                watchdog_s = SHUTDOWN_WATCHDOG.as_secs(),
                "shutdown did not finish in time: exiting without a clean close"
            );
            std::process::exit(EXIT_SHUTDOWN_FORCED);
        })
        .context("starting signal thread")?;
    Ok(())
}

/// Counts live tasks of one kind on one core, so shutdown can wait for them to finish.
#[derive(Debug, Default)]
pub struct TaskCounter(std::cell::Cell<usize>);

impl TaskCounter {
    /// Registers a task; dropping the guard unregisters it.
    pub fn enter(self: &Rc<Self>) -> TaskGuard {
        self.0.set(self.0.get() + 1);
        TaskGuard(self.clone())
    }

    /// Live tasks.
    pub fn count(&self) -> usize {
        self.0.get()
    }
}

/// See [`TaskCounter::enter`].
#[derive(Debug)]
pub struct TaskGuard(Rc<TaskCounter>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        let counter = &self.0 .0;
        assert!(counter.get() > 0);
        counter.set(counter.get() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_buffer_budget_is_a_share_of_memory_within_bounds() {
        let gib = 1u64 << 30;
        // 1/64 of 2 GiB over two cores: 16 MiB each.
        assert_eq!(write_buffer_pool_default_bytes(Some(2 * gib), 2), 16 << 20);
        // A small machine gets the floor, a large one the cap.
        assert_eq!(write_buffer_pool_default_bytes(Some(gib), 4), 12 << 20);
        assert_eq!(
            write_buffer_pool_default_bytes(Some(256 * gib), 1),
            64 << 20
        );
        assert_eq!(write_buffer_pool_default_bytes(None, 1), 12 << 20);
    }

    #[test]
    fn listen_check_sees_only_listening_sockets() {
        let table = "  sl  local_address rem_address   st\n\
             0: 0100007F:4E20 00000000:0000 0A 0:0\n\
             1: 0100007F:4E21 0100007F:C350 06 0:0\n\
             2: 00000000:4E22 00000000:0000 0A 0:0\n";
        let at = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            listening_on(table, at(0x4E20)).is_some(),
            "listener on 127.0.0.1"
        );
        assert!(
            listening_on(table, at(0x4E21)).is_none(),
            "TIME-WAIT does not count"
        );
        assert!(
            listening_on(table, at(0x4E22)).is_some(),
            "wildcard listener"
        );
        assert!(listening_on(table, at(0x4E23)).is_none());
        let other_ip = std::net::SocketAddr::from(([10, 0, 0, 1], 0x4E20));
        assert!(listening_on(table, other_ip).is_none());
    }

    #[test]
    fn io_memory_fits_this_machines_limit() {
        // 8 MiB and two cores: 1 MiB per executor, three rings each: 6 MiB of 8 locked.
        assert_eq!(io_memory_budget_bytes(Some(8 << 20), 2), 1 << 20);
        assert_eq!(io_memory_budget_bytes(None, 2), IO_MEMORY_BYTES_MAX);
        assert_eq!(
            io_memory_budget_bytes(Some(1 << 40), 4),
            IO_MEMORY_BYTES_MAX
        );
        // Tiny limits still give glommio something; it then runs unregistered and says so.
        assert_eq!(
            io_memory_budget_bytes(Some(64 << 10), 8),
            IO_MEMORY_GRANULE_BYTES
        );
    }

    #[test]
    fn budget_times_rings_never_exceeds_share_of_limit() {
        for cores in 1..64 {
            for limit_mib in [1usize, 8, 64, 1024] {
                let limit = limit_mib << 20;
                let budget = io_memory_budget_bytes(Some(limit), cores);
                if budget > IO_MEMORY_GRANULE_BYTES {
                    assert!(budget * IO_MEMORY_RINGS * cores <= limit);
                }
            }
        }
    }
}
