//! `tidelog`: inspect, read, append to and benchmark tidelog logs.
//!
//! Exit codes: 0 fine; 1 an error (a missing log, I/O, a reader stuck
//! behind a live writer); 2 a usage error; 3 damage found in the log
//! (`verify`, or `cat` meeting a damaged record). A closed standard
//! output (`tidelog cat DIR | head`) ends a command quietly, with 0.

mod bench;
mod bridge;
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
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print records, one per line (non-UTF-8 bytes are escaped).
    Cat(inspect::CatArgs),
    /// Append each argument, each line of standard input, each record of
    /// a length-prefixed stream (`--binary`) or a whole file (`--file`).
    Append(inspect::AppendArgs),
    /// Read every record and check it; exit 3 if anything is damaged.
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
    /// Publish a log's records to a NATS JetStream subject, exactly once.
    Forward(bridge::ForwardArgs),
    /// Append a NATS JetStream stream's messages to a log, exactly once.
    Ingest(bridge::IngestArgs),
    /// Internal: one process of a benchmark scenario.
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
    /// Internal: one appender process of the durability scenario.
    #[command(hide = true)]
    BenchDurableWorker(bench::DurableWorkerArgs),
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::BenchWorker(args) => bench::worker(args),
        Command::BenchDurableWorker(args) => bench::durable_worker(args),
        Command::Info { dir, json } => inspect::info(&dir, json),
        Command::Cat(args) => inspect::cat(args),
        Command::Append(args) => inspect::append(args),
        Command::Verify { dir } => inspect::verify(&dir),
        Command::Consumers(args) => queue::consumers(args),
        Command::Groups(args) => queue::groups(args),
        Command::Tail(args) => queue::tail(args),
        Command::Trim(args) => queue::trim(args),
        Command::Forward(args) => bridge::forward(args),
        Command::Ingest(args) => bridge::ingest(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => exit_for(e.as_ref()),
    }
}

/// `println!` panics when standard output is a pipe whose reader went
/// away (`tidelog info DIR | head -1`): end quietly with 0 then, as the
/// commands that write through a buffer do on `BrokenPipe`.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// The exit code (and message) for an error that ended a command.
fn exit_for(e: &(dyn std::error::Error + 'static)) -> ExitCode {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            // The reader of our output went away: nothing more to say.
            return ExitCode::SUCCESS;
        }
    }
    eprintln!("tidelog: {e}");
    match e.downcast_ref::<tidelog::Error>() {
        Some(t) if t.is_corruption() => ExitCode::from(inspect::EXIT_DAMAGE),
        _ => ExitCode::FAILURE,
    }
}
