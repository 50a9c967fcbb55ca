//! `info`, `cat`, `append` and `verify`.

use std::error::Error as StdError;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tidelog::{Error, Log, Position, Stall, StallOwner};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

/// The exit code of a command that found damage in the log.
pub(crate) const EXIT_DAMAGE: u8 = 3;

/// Whether `dir` holds a log (at least one segment file).
pub(crate) fn holds_log(dir: &Path) -> Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        // Not a directory, permission denied: say so, not "no log".
        Err(e) => return Err(format!("{}: {e}", dir.display()).into()),
    };
    Ok(entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.len() == 21 && name.ends_with(".tlog")
    }))
}

/// Opens the log in `dir` for reading, refusing a directory that holds
/// none (instead of reporting an empty log).
pub(crate) fn open_existing(dir: &Path) -> Result<Log> {
    if !holds_log(dir)? {
        return Err(format!("no log at {}", dir.display()).into());
    }
    Ok(Log::open_read_only(dir)?)
}

/// Where a command starts reading: `start`, `end`, a record's position, or
/// the first record appended at or after a time.
#[derive(Debug, Clone, Copy)]
pub(crate) enum From {
    Start,
    End,
    At(u64),
    Time(SystemTime),
}

impl std::str::FromStr for From {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "start" => Ok(From::Start),
            "end" => Ok(From::End),
            _ if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse()
                .map(From::At)
                .map_err(|_| format!("{s:?} is too large for a position")),
            _ => parse_rfc3339(s).map(From::Time).ok_or_else(|| {
                format!(
                    "{s:?} is not start, end, a record position (a number) \
                     or an RFC 3339 time (2026-12-01T09:30:00Z)"
                )
            }),
        }
    }
}

/// A time in RFC 3339: `2026-12-01T09:30:00Z`, with optional fractional
/// seconds and a `Z` or `+HH:MM` offset (`t` or a space may separate date
/// and time).
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0i64, |n, &c| n * 10 + i64::from(c - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in_month = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&mo) || !(1..=days_in_month).contains(&d) || h > 23 || mi > 59 || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    // Before 1970: before every record.
    let Ok(secs) = u64::try_from(secs) else {
        return Some(UNIX_EPOCH);
    };
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// A duration as `--since` takes it: a number and a unit (`ms`, `s`, `m`,
/// `h`, `d`), or several (`1h30m`).
pub(crate) fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration such as 90s, 10m, 1h30m or 2d");
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(bad()),
        };
        rest = &rest[unit..];
        total = total.saturating_add(part);
    }
    Ok(total)
}

/// A reader of `log` at `from`, with a clear error for a position past the
/// end of the log.
pub(crate) fn reader_from(log: &Log, from: From) -> Result<tidelog::Reader> {
    match from {
        From::Start => Ok(log.reader()),
        From::End => Ok(log.reader_at(log.end_position()?)?),
        From::At(p) => {
            let end = log.end_position()?.get();
            if p > end {
                return Err(format!(
                    "position {p} is past the end of the log ({end}): nothing was appended there yet"
                )
                .into());
            }
            Ok(log.reader_at(Position::from(p))?)
        }
        From::Time(t) => Ok(log.reader_at_time(t)?),
    }
}

/// Where to start, from `--from` and `--since` (which clap keeps apart).
pub(crate) fn start(from: Option<From>, since: Option<Duration>) -> From {
    match (from, since) {
        (_, Some(ago)) => From::Time(SystemTime::now().checked_sub(ago).unwrap_or(UNIX_EPOCH)),
        (Some(f), None) => f,
        (None, None) => From::Start,
    }
}

/// Bytes in units a person reads: `512 B`, `64.0 KiB`, `1.0 GiB`.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A time as RFC 3339 with nanoseconds (UTC): a record's append time.
pub(crate) fn rfc3339_nanos(t: SystemTime) -> String {
    let nanos = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let whole = rfc3339(t);
    format!("{}.{nanos:09}Z", &whole[..whole.len() - 1])
}

/// A time as RFC 3339 (UTC, seconds).
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn info(dir: &Path, json: bool) -> Result<ExitCode> {
    let log = open_existing(dir)?;
    let segments = log.segments()?;
    let end = log.end_position()?;
    if json {
        let segs: Vec<serde_json::Value> = segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({
                    "index": s.index,
                    "base": s.base.get(),
                    "capacity": s.capacity,
                    "file_len": s.file_len,
                    "used": s.used,
                    "sealed": s.sealed,
                    "created": rfc3339(s.created),
                    "until": segments.get(i + 1).map(|n| rfc3339(n.created)),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "dir": dir.display().to_string(),
            "id": log.id().to_string(),
            "end_position": end.get(),
            "segments": segs,
            "consumers": crate::queue::consumers_json(&log)?,
            "groups": crate::queue::groups_value(&log)?,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6}  {:>20}  {:>10}  {:>10}  {:>10}  {:<6}  {:<20}  until",
        "index", "base", "capacity", "file", "used", "sealed", "created"
    );
    for (i, s) in segments.iter().enumerate() {
        println!(
            "{:>6}  {:>20}  {:>10}  {:>10}  {:>10}  {:<6}  {:<20}  {}",
            s.index,
            s.base,
            human(s.capacity),
            human(s.file_len),
            human(s.used),
            if s.sealed { "yes" } else { "no" },
            rfc3339(s.created),
            segments
                .get(i + 1)
                .map_or("(newest)".to_owned(), |n| rfc3339(n.created)),
        );
    }
    println!("end position: {end}");
    println!("log id: {}", log.id());
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
    /// Where to start: `start` (the oldest record, the default), `end`,
    /// a record's position, or an RFC 3339 time (the first record appended
    /// at or after it, e.g. 2026-12-01T09:30:00Z).
    #[arg(long, conflicts_with = "since")]
    from: Option<From>,
    /// Start at the first record appended this long ago or later: 90s,
    /// 10m, 1h30m, 2d.
    #[arg(long, value_parser = parse_duration)]
    since: Option<Duration>,
    /// Keep waiting for new records.
    #[arg(long, short)]
    follow: bool,
    /// Prefix each record with its position.
    #[arg(long, short)]
    positions: bool,
    /// Prefix each record with its append time (RFC 3339, UTC).
    #[arg(long, short)]
    times: bool,
    /// Print JSON lines: `{"position": P, "next": N, "time": RFC3339,
    /// "payload": TEXT}`, or `"payload_base64"` for a record that is not
    /// UTF-8.
    #[arg(long)]
    json: bool,
    /// Step over damaged records (saying where on standard error) instead
    /// of stopping at the first; the exit code is 3 if any was skipped.
    #[arg(long)]
    skip_damaged: bool,
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
    let log = open_existing(&args.dir)?;
    let mut reader = reader_from(&log, start(args.from, args.since))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut warned = None;
    let mut skipped = 0u64;
    loop {
        if args.follow {
            out.flush()?;
        }
        let step = if args.follow {
            reader.next_timeout(Duration::from_secs(1))
        } else {
            reader.try_next()
        };
        match step {
            Ok(Some(record)) if args.json => {
                let mut line = serde_json::json!({
                    "position": record.position().get(),
                    "next": record.next_position().get(),
                    "time": rfc3339_nanos(record.timestamp()),
                });
                match std::str::from_utf8(&record) {
                    Ok(text) => line["payload"] = text.into(),
                    Err(_) => line["payload_base64"] = base64(&record).into(),
                }
                // As an `io::Error`: a closed pipe must stay `BrokenPipe`.
                serde_json::to_writer(&mut out, &line).map_err(io::Error::from)?;
                out.write_all(b"\n")?;
            }
            Ok(Some(record)) => {
                if args.positions {
                    write!(out, "{}\t", record.position())?;
                }
                if args.times {
                    write!(out, "{}\t", rfc3339_nanos(record.timestamp()))?;
                }
                out.write_all(record.escape_ascii().to_string().as_bytes())?;
                out.write_all(b"\n")?;
            }
            Ok(None) if args.follow => warn_stall(reader.stall(), &mut warned),
            Ok(None) => match at_end(reader.stall()) {
                AtEnd::Done => break,
                AtEnd::Retry => {}
                AtEnd::Stuck(s) => {
                    out.flush()?;
                    report_stall(&s, true);
                    return Ok(ExitCode::FAILURE);
                }
            },
            Err(e) if args.skip_damaged && e.is_corruption() && e.position().is_some() => {
                let from = reader.position();
                let to = reader.skip_damaged()?;
                skipped += 1;
                out.flush()?;
                if to == from {
                    eprintln!("tidelog: damaged: {e}; no proven record boundary after it");
                    break;
                }
                eprintln!("tidelog: skipped damage: {e}; going on at {to}");
            }
            Err(e) => {
                out.flush()?;
                return Err(e.into());
            }
        }
    }
    out.flush()?;
    Ok(if skipped > 0 {
        ExitCode::from(EXIT_DAMAGE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Standard base64 (RFC 4648, with padding).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ABC[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Arguments of `tidelog append`.
#[derive(Debug, clap::Args)]
pub struct AppendArgs {
    /// The log directory.
    dir: PathBuf,
    /// Make the log if the directory holds none (without it, a mistyped
    /// path is an error rather than a new log).
    #[arg(long)]
    create: bool,
    /// Read records from standard input as a stream of a 4-byte
    /// little-endian length and that many bytes each (any bytes, not only
    /// text).
    #[arg(long, conflicts_with_all = ["file", "records"])]
    binary: bool,
    /// Append the whole of each of these files as one record.
    #[arg(long, action = clap::ArgAction::Append, conflicts_with = "records")]
    file: Vec<PathBuf>,
    /// Records to append; without them (and without `--binary` or
    /// `--file`), each line of standard input is one (any bytes but the
    /// newline).
    records: Vec<String>,
}

pub fn append(args: AppendArgs) -> Result<ExitCode> {
    if !args.create && !holds_log(&args.dir)? {
        return Err(format!(
            "no log at {} (add --create to make one)",
            args.dir.display()
        )
        .into());
    }
    let log = Log::open(&args.dir)?;
    let mut appender = log.appender()?;
    let stdout = io::stdout();
    // A line at a time, as each record is appended; if the reader of the
    // positions goes away, the records are still appended.
    let mut out = io::LineWriter::new(stdout.lock());
    let mut printing = true;
    let mut put = |bytes: &[u8]| -> Result<()> {
        let pos = appender.append(bytes)?;
        if printing {
            match writeln!(out, "{pos}") {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => printing = false,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    };
    if args.binary {
        let mut input = io::stdin().lock();
        loop {
            let mut len = [0u8; 4];
            match read_full(&mut input, &mut len)? {
                0 => break,
                4 => {}
                n => {
                    return Err(
                        format!("standard input ended inside a length ({n} of 4 bytes)").into(),
                    )
                }
            }
            let len = u32::from_le_bytes(len) as usize;
            if len > log.max_record_size() {
                return Err(format!(
                    "a record of {len} bytes is larger than the log's limit ({})",
                    log.max_record_size()
                )
                .into());
            }
            let mut record = vec![0u8; len];
            let got = read_full(&mut input, &mut record)?;
            if got != len {
                return Err(
                    format!("standard input ended inside a record ({got} of {len} bytes)").into(),
                );
            }
            put(&record)?;
        }
    } else if !args.file.is_empty() {
        for f in &args.file {
            let bytes = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            put(&bytes)?;
        }
    } else if args.records.is_empty() {
        let mut input = io::stdin().lock();
        let mut line = Vec::new();
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            put(&line)?;
        }
    } else {
        for r in &args.records {
            put(r.as_bytes())?;
        }
    }
    match out.flush() {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => return Err(e.into()),
        _ => {}
    }
    drop(appender);
    log.close()?;
    Ok(ExitCode::SUCCESS)
}

/// Reads until `buf` is full or the input ends: the bytes read.
fn read_full(input: &mut impl io::Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// Prints a line on standard output without garbling the progress bar.
fn say(bar: &Option<indicatif::ProgressBar>, line: String) {
    match bar {
        Some(bar) => bar.suspend(|| println!("{line}")),
        None => println!("{line}"),
    }
}

/// Logs smaller than this verify without a progress bar.
const PROGRESS_FROM: u64 = 256 << 20;

pub fn verify(dir: &Path) -> Result<ExitCode> {
    let log = open_existing(dir)?;
    let mut reader = log.reader();
    let (mut records, mut bytes, mut damaged) = (0u64, 0u64, 0u64);
    // A bar on standard error, for large logs: indicatif draws nothing
    // when standard error is not a terminal.
    let start = reader.position().get();
    let span = log.end_position()?.get().saturating_sub(start);
    let bar = (span >= PROGRESS_FROM).then(|| {
        let bar = indicatif::ProgressBar::new(span);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "verifying {bar:40} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let mut next_draw = 0;
    loop {
        match reader.try_next() {
            Ok(Some(r)) => {
                records += 1;
                bytes += r.len() as u64;
                if let Some(bar) = &bar {
                    let at = r.next_position().get();
                    if at >= next_draw {
                        bar.set_position(at.saturating_sub(start));
                        next_draw = at + (8 << 20);
                    }
                }
            }
            Ok(None) => break,
            Err(e) if e.is_corruption() && e.position().is_some() => {
                damaged += 1;
                let from = reader.position();
                let to = reader.skip_damaged()?;
                if to == from {
                    say(
                        &bar,
                        format!("damaged: {e}; no proven record boundary after it"),
                    );
                    break;
                }
                say(&bar, format!("damaged: {e}; skipped to {to}"));
            }
            Err(e @ Error::MissingSegment { .. }) => {
                damaged += 1;
                say(&bar, format!("damaged: {e}"));
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    println!("{records} records, {bytes} payload bytes, {damaged} damaged");
    Ok(if damaged == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DAMAGE)
    })
}
