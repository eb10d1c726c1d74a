//! spate-bench: load generator for Spate (and any Kafka broker the client can talk to).
//!
//! - `spate-bench run [options]`: produce (open loop at `--rate`, or closed loop), optionally
//!   consume and verify every record; prints a progress line per second (not with `--quiet`),
//!   then a human summary; `--json PATH` writes the JSON summary (`--json -`: to stdout, the
//!   human summary then goes to stderr), `--hgrm-prefix` the latency histograms.
//! - `spate-bench compare A.json B.json`: side-by-side table with B/A ratios.
//! - `spate-bench gate BASELINE.json CANDIDATE.json`: CI check (loss, ack and end-to-end p99
//!   within given factors of the baseline's).
//! - `spate-bench plot A.json [B.json ...] -o out.svg [--log-y]`: latency by percentile, each
//!   run named by its `--label`.
//! - `spate-bench disk --dir D`: raw sequential O_DIRECT write bandwidth of a directory (`run`
//!   measures it around a run with `--raw-disk-dir`).
//! - `spate-bench hiccup --cpu 0,1`: how often and how long the machine takes each CPU away
//!   from a thread that wants it (the floor under any latency measured there).

mod compare;
mod disk;
mod hiccup;
mod plot;
mod report;
mod run;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "spate-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a produce (and consume) benchmark.
    Run(Box<run::RunArgs>),
    /// Compare two JSON summaries.
    Compare {
        /// Baseline.
        a: PathBuf,
        /// Candidate.
        b: PathBuf,
    },
    /// CI gate: exit 1 if the candidate lost records, its ack p99 is above `--p99-factor-max`
    /// times the baseline's, or its end-to-end p99 above `--e2e-p99-factor-max` times the
    /// baseline's (when the baseline has end-to-end latencies).
    Gate {
        /// Baseline summary.
        baseline: PathBuf,
        /// Candidate summary.
        candidate: PathBuf,
        /// Allowed ack p99 ratio.
        #[arg(long, default_value_t = 3.0)]
        p99_factor_max: f64,
        /// Allowed end-to-end p99 ratio.
        #[arg(long, default_value_t = 3.0)]
        e2e_p99_factor_max: f64,
    },
    /// Measure raw sequential O_DIRECT write bandwidth of a directory.
    Disk {
        /// Directory to write a scratch file in (deleted afterwards).
        #[arg(long)]
        dir: PathBuf,
        /// MiB to write.
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        /// Pin to this CPU.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// Measure how long the machine stalls a pinned thread on each CPU (interrupts, kernel
    /// threads, steal): run it before trusting a latency run.
    Hiccup(hiccup::HiccupArgs),
    /// Plot latency percentiles of one or more JSON summaries as SVG; each run is named by its
    /// `--label`, else its file name.
    Plot {
        /// Summaries.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output SVG file.
        #[arg(short, long)]
        output: PathBuf,
        /// Which latency.
        #[arg(long, value_enum, default_value_t = Metric::Ack)]
        metric: Metric,
        /// Logarithmic latency axis (one decade per step), so runs milliseconds apart and
        /// runs seconds apart are both readable on one chart.
        #[arg(long)]
        log_y: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Metric {
    /// Produce acknowledgement latency.
    Ack,
    /// End-to-end latency.
    E2e,
}

fn load(path: &PathBuf) -> anyhow::Result<report::Summary> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Where `run --json` sends the JSON summary: `-` is stdout.
fn json_to_stdout(path: &Path) -> bool {
    path == Path::new("-")
}

/// Prints the human summary of a run (on stdout, or on stderr when the JSON goes to stdout) and
/// writes its JSON summary where `--json` asked.
fn report_run(summary: &report::Summary, json: Option<&Path>) -> anyhow::Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(summary)?;
    // Written, not `print!`ed: a closed stdout (`| head`) is an error to report, not a panic.
    let mut stdout = std::io::stdout().lock();
    match json {
        Some(path) if json_to_stdout(path) => {
            eprint!("{summary}");
            writeln!(stdout, "{text}")?;
        }
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            write!(stdout, "{summary}")?;
            writeln!(stdout, "json:         {}", path.display())?;
        }
        None => write!(stdout, "{summary}")?,
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    match Cli::parse().command {
        Command::Run(args) => {
            let json = args.json.clone();
            let summary = run::run(*args, command_line)?;
            report_run(&summary, json.as_deref())?;
            if summary.loss_check.ran && !summary.loss_check.ok {
                anyhow::bail!("loss check failed: {:?}", summary.loss_check);
            }
        }
        Command::Compare { a, b } => {
            let (sa, sb) = (load(&a)?, load(&b)?);
            let names = report::names(&[a, b], &[sa.clone(), sb.clone()]);
            print!("{}", compare::table(&names[0], &sa, &names[1], &sb));
        }
        Command::Gate {
            baseline,
            candidate,
            p99_factor_max,
            e2e_p99_factor_max,
        } => {
            let (sa, sb) = (load(&baseline)?, load(&candidate)?);
            print!("{}", compare::table("baseline", &sa, "candidate", &sb));
            let limits = compare::GateLimits {
                ack_p99_factor_max: p99_factor_max,
                e2e_p99_factor_max,
            };
            let failures = compare::gate(&sa, &sb, limits);
            if !failures.is_empty() {
                anyhow::bail!("latency gate failed: {}", failures.join("; "));
            }
            println!("latency gate passed");
        }
        Command::Disk { dir, mib, cpu } => {
            let mb_s = disk::measure(&dir, mib << 20, cpu, 512 << 10)?;
            println!(
                "raw O_DIRECT sequential writes ({} KiB, {} in flight, one fdatasync): {mb_s:.0} MB/s",
                disk::WRITE_BYTES >> 10,
                disk::WRITES_IN_FLIGHT
            );
        }
        Command::Hiccup(args) => {
            let summaries = hiccup::measure(&args)?;
            print!("{}", hiccup::table(&summaries));
            if let Some(path) = &args.json {
                hiccup::write_json(path, &summaries)?;
            }
        }
        Command::Plot {
            inputs,
            output,
            metric,
            log_y,
        } => {
            let summaries: Vec<_> = inputs.iter().map(load).collect::<Result<_, _>>()?;
            let series: Vec<(String, &report::LatencySummary)> = report::names(&inputs, &summaries)
                .into_iter()
                .zip(&summaries)
                .map(|(name, s)| {
                    let l = match metric {
                        Metric::Ack => &s.ack_latency,
                        Metric::E2e => &s.e2e_latency,
                    };
                    (name, l)
                })
                .collect();
            let title = match metric {
                Metric::Ack => "produce ack latency by percentile",
                Metric::E2e => "end-to-end latency by percentile",
            };
            let y_axis = if log_y {
                plot::YAxis::Log
            } else {
                plot::YAxis::Linear
            };
            std::fs::write(&output, plot::svg(title, &series, y_axis))
                .with_context(|| format!("writing {}", output.display()))?;
        }
    }
    Ok(())
}
