//! `info`, `cat`, `append` and `verify`.

use std::error::Error as StdError;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use tidelog::{Error, Log, Position};

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

pub fn cat(args: CatArgs) -> Result<ExitCode> {
    let log = Log::open_read_only(&args.dir)?;
    let mut reader = match args.from {
        Some(p) => log.reader_at(Position::from(p))?,
        None => log.reader(),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    loop {
        let record = if args.follow {
            out.flush()?;
            match reader.next_timeout(Duration::from_secs(1))? {
                Some(r) => r,
                None => continue,
            }
        } else {
            match reader.try_next()? {
                Some(r) => r,
                None => break,
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
