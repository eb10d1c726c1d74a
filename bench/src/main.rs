//! spate-bench: load generator for Spate (and any Kafka broker the client can talk to).
//!
//! - `spate-bench run [options]`: produce (open loop at `--rate`, or closed loop), optionally
//!   consume and verify every record; prints a progress line per second, then the JSON summary;
//!   `--json` and `--hgrm-prefix` write it and the latency histograms to files.
//! - `spate-bench compare A.json B.json`: side-by-side table with B/A ratios.
//! - `spate-bench gate BASELINE.json CANDIDATE.json`: CI check (loss, p99 within 3x).
//! - `spate-bench plot A.json [B.json ...] -o out.svg`: latency by percentile.
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

use std::path::PathBuf;

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
    /// CI gate: exit 1 if the candidate lost records or its ack p99 is above
    /// `--p99-factor-max` times the baseline's.
    Gate {
        /// Baseline summary.
        baseline: PathBuf,
        /// Candidate summary.
        candidate: PathBuf,
        /// Allowed p99 ratio.
        #[arg(long, default_value_t = 3.0)]
        p99_factor_max: f64,
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
    /// Plot latency percentiles of one or more JSON summaries as SVG.
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

fn main() -> anyhow::Result<()> {
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    match Cli::parse().command {
        Command::Run(args) => {
            let json_path = args.json.clone();
            let summary = run::run(*args, command_line)?;
            let text = serde_json::to_string_pretty(&summary)?;
            if let Some(path) = json_path {
                std::fs::write(&path, &text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let mut brief = summary.clone();
            brief.ack_latency.distribution.clear();
            brief.e2e_latency.distribution.clear();
            brief.send_lag.distribution.clear();
            println!("{}", serde_json::to_string_pretty(&brief)?);
            if brief.loss_check.ran && !brief.loss_check.ok {
                anyhow::bail!("loss check failed: {:?}", brief.loss_check);
            }
        }
        Command::Compare { a, b } => {
            let (sa, sb) = (load(&a)?, load(&b)?);
            print!(
                "{}",
                compare::table(&a.display().to_string(), &sa, &b.display().to_string(), &sb)
            );
        }
        Command::Gate {
            baseline,
            candidate,
            p99_factor_max,
        } => {
            let (sa, sb) = (load(&baseline)?, load(&candidate)?);
            print!("{}", compare::table("baseline", &sa, "candidate", &sb));
            let failures = compare::gate(&sa, &sb, p99_factor_max);
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
        } => {
            let summaries: Vec<_> = inputs.iter().map(load).collect::<Result<_, _>>()?;
            let series: Vec<(String, &report::LatencySummary)> = inputs
                .iter()
                .zip(&summaries)
                .map(|(p, s)| {
                    let l = match metric {
                        Metric::Ack => &s.ack_latency,
                        Metric::E2e => &s.e2e_latency,
                    };
                    (p.display().to_string(), l)
                })
                .collect();
            let title = match metric {
                Metric::Ack => "produce ack latency by percentile",
                Metric::E2e => "end-to-end latency by percentile",
            };
            std::fs::write(&output, plot::svg(title, &series))
                .with_context(|| format!("writing {}", output.display()))?;
        }
    }
    Ok(())
}
