//! A work queue: a producer appends jobs, and worker processes of one
//! consumer group share them, each job acknowledged by exactly one worker
//! (redelivered if its worker dies first).
//!
//! ```sh
//! cargo run --example work_queue      # a producer and three worker processes
//! ```

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tidelog::Log;

const JOBS: u64 = 3000;

fn worker(dir: &Path, id: &str) -> Result<u64, tidelog::Error> {
    let log = Log::open(dir)?;
    let mut member = log.group_member("resize-images")?;
    let mut done = 0;
    // Stop once no job arrives for two seconds.
    while let Some(mut batch) = member.claim_timeout(Duration::from_secs(2))? {
        while let Some(job) = member.next_record(&mut batch)? {
            // The work itself; here, nothing but a look at the job.
            let _ = (id, job.len());
            done += 1;
        }
        member.ack(batch)?;
    }
    Ok(done)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        let done = worker(Path::new(&args[1]), &args[2])?;
        println!("{done}");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("jobs");
    let log = Log::open(&dir)?;
    // Join the group before the jobs arrive, so that it starts at the
    // first one.
    drop(log.group_member("resize-images")?);
    let workers: Vec<_> = (0..3)
        .map(|i| {
            Command::new(std::env::current_exe().unwrap())
                .args(["worker", dir.to_str().unwrap(), &i.to_string()])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    let mut appender = log.appender()?;
    for i in 0..JOBS {
        appender.append(format!("job {i}").as_bytes())?;
    }
    let mut total = 0;
    for (i, w) in workers.into_iter().enumerate() {
        let out = w.wait_with_output()?;
        let n: u64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        println!("worker {i} did {n} jobs");
        total += n;
    }
    assert_eq!(total, JOBS, "every job done exactly once");
    println!("{total} jobs, each done once");
    Ok(())
}
