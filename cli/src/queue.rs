//! The queue's commands: `consumers`, `groups`, `tail` and `trim`.

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tidelog::{ConsumerInfo, GroupInfo, Log, Options, Position, Retention, StartAt};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

/// Arguments of `tidelog consumers`.
#[derive(Debug, clap::Args)]
pub struct ConsumersArgs {
    /// The log directory.
    dir: PathBuf,
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<ConsumerAction>,
}

#[derive(Debug, clap::Subcommand)]
enum ConsumerAction {
    /// Move a consumer (not running now) to the start, the end, a position
    /// or a time.
    Reset {
        /// The consumer's name.
        name: String,
        /// `start`, `end`, a record's position, or an RFC 3339 time (the
        /// first record appended at or after it).
        #[arg(long)]
        to: String,
    },
    /// Delete a consumer (not running now).
    Delete {
        /// The consumer's name.
        name: String,
    },
}

fn start_at(to: &str) -> Result<StartAt> {
    Ok(match to {
        "start" => StartAt::Beginning,
        "end" => StartAt::End,
        p => match (p.parse::<u64>(), crate::inspect::parse_rfc3339(p)) {
            (Ok(n), _) => StartAt::Position(Position::from(n)),
            (_, Some(t)) => StartAt::Time(t),
            _ => {
                return Err(format!(
                    "--to takes start, end, a position or an RFC 3339 time, not {p:?}"
                )
                .into())
            }
        },
    })
}

fn ago(t: SystemTime) -> String {
    match SystemTime::now().duration_since(t) {
        Ok(d) if d.as_secs() < 120 => format!("{}s ago", d.as_secs()),
        Ok(d) if d.as_secs() < 7200 => format!("{}m ago", d.as_secs() / 60),
        Ok(d) if d.as_secs() < 172_800 => format!("{}h ago", d.as_secs() / 3600),
        Ok(d) => format!("{}d ago", d.as_secs() / 86_400),
        Err(_) => "just now".to_owned(),
    }
}

fn to_json(list: &[ConsumerInfo]) -> serde_json::Value {
    serde_json::Value::Array(
        list.iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name,
                    "committed": c.committed.get(),
                    "lag_records": c.lag_records,
                    "lag_bytes": c.lag_bytes,
                    "last_commit_unix_ns": unix_ns(c.last_commit),
                    "active": c.active,
                })
            })
            .collect(),
    )
}

/// The consumers of `log` as JSON (for `tidelog info --json`).
pub(crate) fn consumers_json(log: &Log) -> Result<serde_json::Value> {
    Ok(to_json(&log.consumers()?))
}

/// The consumer groups of `log` as JSON (for `tidelog info --json`).
pub(crate) fn groups_value(log: &Log) -> Result<serde_json::Value> {
    Ok(groups_json(&log.groups()?))
}

/// Prints the consumers of the log at `log`.
pub(crate) fn print_consumers(log: &Log, json: bool) -> Result<()> {
    let list = log.consumers()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json(&list))?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no consumers");
        return Ok(());
    }
    println!(
        "{:<24}  {:>20}  {:>12}  {:>14}  {:>12}  active",
        "consumer", "committed", "lag records", "lag bytes", "last commit"
    );
    for c in &list {
        println!(
            "{:<24}  {:>20}  {:>12}  {:>14}  {:>12}  {}",
            c.name,
            c.committed,
            c.lag_records,
            c.lag_bytes,
            ago(c.last_commit),
            if c.active { "yes" } else { "no" }
        );
    }
    Ok(())
}

pub fn consumers(args: ConsumersArgs) -> Result<ExitCode> {
    let log = crate::inspect::open_existing(&args.dir)?;
    match args.action {
        None => print_consumers(&log, args.json)?,
        Some(ConsumerAction::Reset { name, to }) => {
            log.reset_consumer(&name, start_at(&to)?)?;
            println!("{name}: reset");
        }
        Some(ConsumerAction::Delete { name }) => {
            log.delete_consumer(&name)?;
            println!("{name}: deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `tidelog groups`.
#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    /// The log directory.
    dir: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    action: Option<GroupAction>,
}

#[derive(Debug, clap::Subcommand)]
enum GroupAction {
    /// List a group's dead letters (the latest 128): records delivered
    /// max-deliveries times without being acknowledged.
    DeadLetters {
        /// The group's name.
        name: String,
    },
    /// Move a group (no members running) to the start, the end, or a
    /// position, dropping the batches in flight.
    Reset {
        /// The group's name.
        name: String,
        /// `start`, `end`, a record's position, or an RFC 3339 time (the
        /// first record appended at or after it).
        #[arg(long)]
        to: String,
    },
    /// Delete a group (no members running) and its dead letters.
    Delete {
        /// The group's name.
        name: String,
    },
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn groups_json(list: &[GroupInfo]) -> serde_json::Value {
    serde_json::Value::Array(
        list.iter()
            .map(|g| {
                serde_json::json!({
                    "name": g.name,
                    "watermark": g.watermark.get(),
                    "dispatched": g.dispatched.get(),
                    "lag_records": g.lag_records,
                    "lag_bytes": g.lag_bytes,
                    "members": g.members.iter().map(|(pid, joined)| serde_json::json!({
                        "pid": pid,
                        "joined_unix_ns": unix_ns(*joined),
                    })).collect::<Vec<_>>(),
                    "in_flight": g.in_flight,
                    "orphans": g.orphans,
                    "dead_letters": g.dead_letters,
                    "max_deliveries": g.max_deliveries,
                    "visibility_timeout_ms": g.visibility_timeout.as_millis() as u64,
                    "created_unix_ns": unix_ns(g.created),
                })
            })
            .collect(),
    )
}

/// Prints the consumer groups of the log at `log`.
pub(crate) fn print_groups(log: &Log, json: bool) -> Result<()> {
    let list = log.groups()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&groups_json(&list))?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no consumer groups");
        return Ok(());
    }
    println!(
        "{:<24}  {:>20}  {:>12}  {:>14}  {:>7}  {:>9}  {:>12}",
        "group", "watermark", "lag records", "lag bytes", "members", "in flight", "dead letters"
    );
    for g in &list {
        println!(
            "{:<24}  {:>20}  {:>12}  {:>14}  {:>7}  {:>9}  {:>12}",
            g.name,
            g.watermark,
            g.lag_records,
            g.lag_bytes,
            g.members.len(),
            g.in_flight,
            g.dead_letters
        );
    }
    Ok(())
}

fn print_dead_letters(log: &Log, name: &str, json: bool) -> Result<()> {
    let dead = log.dead_letters(name)?;
    // The records, or why they cannot be shown: deleted by retention, or
    // damaged (a damaged record is dead-lettered too).
    let payload = |p: Position| -> std::result::Result<String, String> {
        let mut r = log.reader_at(p).map_err(|e| why_not(&e))?;
        match r.try_next() {
            Ok(Some(rec)) => Ok(rec.escape_ascii().to_string()),
            Ok(None) => Err("(not published)".into()),
            Err(e) => Err(why_not(&e)),
        }
    };
    fn why_not(e: &tidelog::Error) -> String {
        match e {
            tidelog::Error::Retired { .. } => "(deleted by retention)".into(),
            e => format!("(unreadable: {e})"),
        }
    }
    if json {
        let list: Vec<_> = dead
            .iter()
            .map(|d| {
                serde_json::json!({
                    "position": d.position.get(),
                    "end": d.end.get(),
                    "deliveries": d.deliveries,
                    "at_unix_ns": unix_ns(d.at),
                    "record": payload(d.position).ok(),
                    "unreadable": payload(d.position).err(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if dead.is_empty() {
        println!("no dead letters");
        return Ok(());
    }
    println!(
        "{:>20}  {:>10}  {:>12}  record",
        "position", "deliveries", "when"
    );
    for d in &dead {
        println!(
            "{:>20}  {:>10}  {:>12}  {}",
            d.position,
            d.deliveries,
            ago(d.at),
            payload(d.position).unwrap_or_else(|why| why)
        );
    }
    Ok(())
}

pub fn groups(args: GroupsArgs) -> Result<ExitCode> {
    let log = crate::inspect::open_existing(&args.dir)?;
    match args.action {
        None => print_groups(&log, args.json)?,
        Some(GroupAction::DeadLetters { name }) => print_dead_letters(&log, &name, args.json)?,
        Some(GroupAction::Reset { name, to }) => {
            log.reset_group(&name, start_at(&to)?)?;
            println!("{name}: reset");
        }
        Some(GroupAction::Delete { name }) => {
            log.delete_group(&name)?;
            println!("{name}: deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `tidelog tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The log directory.
    dir: PathBuf,
    /// How many of the last records to print.
    #[arg(short = 'n', long, default_value_t = 10)]
    lines: usize,
    /// Keep printing new records as they are appended (a blocking wait).
    #[arg(short, long)]
    follow: bool,
    /// Read as this durable consumer, from its committed position,
    /// committing each record once printed (instead of the last N).
    #[arg(long)]
    consumer: Option<String>,
    /// Prefix each record with its position.
    #[arg(long, short)]
    positions: bool,
}

fn print_record(
    out: &mut impl Write,
    position: Position,
    bytes: &[u8],
    positions: bool,
) -> io::Result<()> {
    if positions {
        write!(out, "{position}\t")?;
    }
    out.write_all(bytes.escape_ascii().to_string().as_bytes())?;
    out.write_all(b"\n")
}

/// Records with their positions.
type Records = Vec<(Position, Vec<u8>)>;

/// The last `n` records, and where the log ends after them: read from the
/// newest segment back, as far as needed.
fn last_records(log: &Log, n: usize) -> Result<(Records, Position)> {
    let segments = log.segments()?;
    let mut found: VecDeque<(Position, Vec<u8>)> = VecDeque::new();
    // Where following starts: after the newest record read.
    let mut end = None;
    for s in segments.iter().rev() {
        if found.len() >= n {
            break;
        }
        let first = Position::from(s.base.get() + 4096);
        let limit = s.base.get() + s.capacity;
        let mut r = match log.reader_at(first) {
            Ok(r) => r,
            Err(tidelog::Error::Retired { .. }) => break,
            Err(e) => return Err(e.into()),
        };
        let mut here = Vec::new();
        let mut after = None;
        while let Some(rec) = r.try_next()? {
            if rec.position().get() >= limit {
                break;
            }
            after = Some(rec.next_position());
            here.push((rec.position(), rec.to_vec()));
        }
        end = end.or(after);
        for rec in here.into_iter().rev() {
            if found.len() >= n {
                break;
            }
            found.push_front(rec);
        }
    }
    let end = match end {
        Some(e) => e,
        None => log.end_position()?,
    };
    Ok((found.into(), end))
}

pub fn tail(args: TailArgs) -> Result<ExitCode> {
    let log = crate::inspect::open_existing(&args.dir)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if let Some(name) = &args.consumer {
        let mut c = log.consumer(name)?;
        let mut warned = None;
        loop {
            let rec = if args.follow {
                out.flush()?;
                match c.next_timeout(Duration::from_secs(1))? {
                    Some(r) => r,
                    None => {
                        crate::inspect::warn_stall(c.stall(), &mut warned);
                        continue;
                    }
                }
            } else {
                match c.try_next()? {
                    Some(r) => r,
                    None => match crate::inspect::at_end(c.stall()) {
                        crate::inspect::AtEnd::Done => break,
                        crate::inspect::AtEnd::Retry => continue,
                        crate::inspect::AtEnd::Stuck(s) => {
                            out.flush()?;
                            crate::inspect::report_stall(&s, true);
                            return Ok(ExitCode::from(1));
                        }
                    },
                }
            };
            print_record(&mut out, rec.position(), &rec, args.positions)?;
            out.flush()?;
            c.commit()?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let (last, end) = last_records(&log, args.lines)?;
    for (p, bytes) in &last {
        print_record(&mut out, *p, bytes, args.positions)?;
    }
    if args.follow {
        let mut r = log.reader_at(end)?;
        let mut warned = None;
        loop {
            out.flush()?;
            match r.next_timeout(Duration::from_secs(1))? {
                Some(rec) => print_record(&mut out, rec.position(), &rec, args.positions)?,
                None => crate::inspect::warn_stall(r.stall(), &mut warned),
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `tidelog trim`.
#[derive(Debug, clap::Args)]
pub struct TrimArgs {
    /// The log directory.
    dir: PathBuf,
    /// Keep at most this much of segment files (e.g. `512MiB`, `8G`, `1000000`).
    #[arg(long)]
    max_bytes: Option<String>,
    /// Delete segments whose newest record is older than this (e.g. `7d`, `12h`, `30m`, `90s`).
    #[arg(long)]
    max_age: Option<String>,
    /// Delete past durable consumers that have not read that far.
    #[arg(long)]
    past_consumers: bool,
    /// Only say what would be deleted.
    #[arg(long)]
    dry_run: bool,
}

/// Parses `512MiB`, `8G`, `64k`, `1000` (binary multiples).
pub fn parse_bytes(s: &str) -> Result<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        u => return Err(format!("unknown size unit {u:?} in {s:?}").into()),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size too large: {s:?}").into())
}

/// Parses `7d`, `12h`, `30m`, `90s`, `250ms`.
pub fn parse_age(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("not an age: {s:?}"))?;
    let secs = |per: u64| {
        n.checked_mul(per)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("age too large: {s:?}"))
    };
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => secs(60)?,
        "h" => secs(3600)?,
        "d" => secs(86_400)?,
        u => return Err(format!("unknown age unit {u:?} in {s:?}").into()),
    })
}

pub fn trim(args: TrimArgs) -> Result<ExitCode> {
    let mut r = Retention::new().past_consumers(args.past_consumers);
    if let Some(b) = &args.max_bytes {
        r = r.max_bytes(parse_bytes(b)?);
    }
    if let Some(a) = &args.max_age {
        r = r.max_age(parse_age(a)?);
    }
    if args.max_bytes.is_none() && args.max_age.is_none() {
        return Err("say how much to keep: --max-bytes and/or --max-age".into());
    }
    let log = if args.dry_run {
        crate::inspect::open_existing(&args.dir)?
    } else {
        Options::new().open(existing(&args.dir)?)?
    };
    let report = log.apply_retention_with(r, args.dry_run)?;
    println!(
        "{} {} segments ({} bytes); oldest position kept: {}",
        if args.dry_run {
            "would delete"
        } else {
            "deleted"
        },
        report.segments_deleted,
        report.bytes_freed,
        report.oldest
    );
    if let Some(name) = report.held_back_by {
        // `name` is a consumer's name, or `group NAME` for a group.
        let who = if name.starts_with("group ") {
            name
        } else {
            format!("consumer {name:?}")
        };
        println!("held back by {who}, which has not read further");
    }
    Ok(ExitCode::SUCCESS)
}

/// `dir`, if it holds a log: trimming never creates one.
fn existing(dir: &Path) -> Result<&Path> {
    crate::inspect::open_existing(dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_parse() {
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("8G").unwrap(), 8 << 30);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("12 parsecs").is_err());
        assert_eq!(parse_age("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse_age("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_age("3 fortnights").is_err());
    }
}
