//! `tidelog`: inspect, read, append to and benchmark tidelog logs.

mod bench;
mod inspect;
mod queue;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tidelog",
    version,
    about = "Append-only memory-mapped logs as durable IPC queues"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Benchmark producer and consumer processes over a temporary log.
    Bench(bench::Args),
    /// Show a log's segments, its consumers and its consumer groups.
    Info {
        /// The log directory.
        dir: PathBuf,
    },
    /// Print records, one per line (non-UTF-8 bytes are escaped).
    Cat(inspect::CatArgs),
    /// Append each argument (or each line of standard input) as a record.
    Append {
        /// The log directory (created if missing).
        dir: PathBuf,
        /// Records to append; standard input lines if none are given.
        records: Vec<String>,
    },
    /// Read every record and check it; exit 1 if anything is damaged.
    Verify {
        /// The log directory.
        dir: PathBuf,
    },
    /// List durable consumers with their lag, or reset or delete one.
    Consumers(queue::ConsumersArgs),
    /// List consumer groups with their lag, list a group's dead letters, or
    /// reset or delete a group.
    Groups(queue::GroupsArgs),
    /// Print the last records; follow new ones; or read as a consumer.
    Tail(queue::TailArgs),
    /// Delete old segments now (retention): by size and/or age.
    Trim(queue::TrimArgs),
    /// Internal: one process of a benchmark scenario.
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
    /// Internal: one appender process of the durability scenario.
    #[command(hide = true)]
    BenchDurableWorker(bench::DurableWorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::BenchWorker(args) => bench::worker(args),
        Command::BenchDurableWorker(args) => bench::durable_worker(args),
        Command::Info { dir } => inspect::info(&dir),
        Command::Cat(args) => inspect::cat(args),
        Command::Append { dir, records } => inspect::append(&dir, records),
        Command::Verify { dir } => inspect::verify(&dir),
        Command::Consumers(args) => queue::consumers(args),
        Command::Groups(args) => queue::groups(args),
        Command::Tail(args) => queue::tail(args),
        Command::Trim(args) => queue::trim(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tidelog: {e}");
            ExitCode::FAILURE
        }
    }
}
