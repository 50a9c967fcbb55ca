//! `info`, `cat`, `append` and `verify`.

use std::error::Error as StdError;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tidelog::{Error, Log, Position, Stall, StallOwner};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

pub fn info(dir: &Path) -> Result<ExitCode> {
    let log = Log::open_read_only(dir)?;
    println!(
        "{:>6}  {:>20}  {:>12}  {:>12}  {:>12}  sealed",
        "index", "base", "capacity", "file", "used"
    );
    for s in log.segments()? {
        println!(
            "{:>6}  {:>20}  {:>12}  {:>12}  {:>12}  {}",
            s.index,
            s.base,
            s.capacity,
            s.file_len,
            s.used,
            if s.sealed { "yes" } else { "no" }
        );
    }
    println!("end position: {}", log.end_position()?);
    println!();
    crate::queue::print_consumers(&log, false)?;
    println!();
    crate::queue::print_groups(&log, false)?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `tidelog cat`.
#[derive(Debug, clap::Args)]
pub struct CatArgs {
    /// The log directory.
    dir: PathBuf,
    /// Start at this record position instead of the oldest record.
    #[arg(long)]
    from: Option<u64>,
    /// Keep waiting for new records.
    #[arg(long, short)]
    follow: bool,
    /// Prefix each record with its position.
    #[arg(long, short)]
    positions: bool,
}

/// How long a command that reads to the end waits at a record that was
/// reserved but is not complete before it says so: a live appender
/// finishes one within microseconds, and a dead one's hole is passed
/// within milliseconds.
const STALL_LIMIT: Duration = Duration::from_secs(1);

/// Followers warn about a stall this old (once per position).
const STALL_WARN: Duration = Duration::from_secs(5);

/// What a command reading to the end does when its reader returned no
/// record.
pub(crate) enum AtEnd {
    /// The end of the log.
    Done,
    /// The reader waits at an unfinished record: try again shortly (it
    /// judges the record's owner, and passes a dead one's hole).
    Retry,
    /// Stuck at an unfinished record whose appender may be alive.
    Stuck(Stall),
}

pub(crate) fn at_end(stall: Option<Stall>) -> AtEnd {
    match stall {
        None => AtEnd::Done,
        Some(s) if s.owner != StallOwner::NotJudged && s.waited >= STALL_LIMIT => AtEnd::Stuck(s),
        Some(_) => {
            std::thread::sleep(Duration::from_millis(2));
            AtEnd::Retry
        }
    }
}

/// Says on stderr where a reader is stuck and why.
pub(crate) fn report_stall(s: &Stall, stopped: bool) {
    let owner = match s.owner {
        StallOwner::MaybeAlive => "its appender is alive (slow, stopped, or holding a reservation)",
        StallOwner::Unknown => "its appender cannot be judged (no owner table)",
        _ => "its appender has not been judged yet",
    };
    eprintln!(
        "tidelog: {} at position {}: the record reserved there has been unfinished for {:.1?}; {owner}. \
         A reader with write access pads it over after the log's unblock timeout.",
        if stopped { "stopped" } else { "waiting" },
        s.position,
        s.waited
    );
}

/// Warns once per position about a follower's long stall.
pub(crate) fn warn_stall(stall: Option<Stall>, warned: &mut Option<Position>) {
    if let Some(s) = stall {
        if s.waited >= STALL_WARN && *warned != Some(s.position) {
            *warned = Some(s.position);
            report_stall(&s, false);
        }
    }
}

pub fn cat(args: CatArgs) -> Result<ExitCode> {
    let log = Log::open_read_only(&args.dir)?;
    let mut reader = match args.from {
        Some(p) => log.reader_at(Position::from(p))?,
        None => log.reader(),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut warned = None;
    loop {
        let record = if args.follow {
            out.flush()?;
            match reader.next_timeout(Duration::from_secs(1))? {
                Some(r) => r,
                None => {
                    warn_stall(reader.stall(), &mut warned);
                    continue;
                }
            }
        } else {
            match reader.try_next()? {
                Some(r) => r,
                None => match at_end(reader.stall()) {
                    AtEnd::Done => break,
                    AtEnd::Retry => continue,
                    AtEnd::Stuck(s) => {
                        out.flush()?;
                        report_stall(&s, true);
                        return Ok(ExitCode::from(1));
                    }
                },
            }
        };
        if args.positions {
            write!(out, "{}\t", record.position())?;
        }
        out.write_all(record.escape_ascii().to_string().as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn append(dir: &Path, records: Vec<String>) -> Result<ExitCode> {
    let log = Log::open(dir)?;
    let mut appender = log.appender()?;
    if records.is_empty() {
        for line in io::stdin().lock().lines() {
            let pos = appender.append(line?.as_bytes())?;
            println!("{pos}");
        }
    } else {
        for r in records {
            println!("{}", appender.append(r.as_bytes())?);
        }
    }
    log.close()?;
    Ok(ExitCode::SUCCESS)
}

pub fn verify(dir: &Path) -> Result<ExitCode> {
    let log = Log::open_read_only(dir)?;
    let mut reader = log.reader();
    let (mut records, mut bytes, mut damaged) = (0u64, 0u64, 0u64);
    loop {
        match reader.try_next() {
            Ok(Some(r)) => {
                records += 1;
                bytes += r.len() as u64;
            }
            Ok(None) => break,
            Err(e) if e.is_corruption() && e.position().is_some() => {
                damaged += 1;
                let from = reader.position();
                let to = reader.skip_damaged()?;
                if to == from {
                    println!("damaged: {e}; no proven record boundary after it");
                    break;
                }
                println!("damaged: {e}; skipped to {to}");
            }
            Err(e @ Error::MissingSegment { .. }) => {
                damaged += 1;
                println!("damaged: {e}");
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    println!("{records} records, {bytes} payload bytes, {damaged} damaged");
    Ok(if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
