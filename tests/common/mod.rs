//! Helpers shared by the integration tests: deterministic payloads and
//! child processes (the test binary re-run in a given role).
#![allow(
    dead_code,
    reason = "each test crate includes this module and uses a different part of it"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Environment variable naming the role a re-run test binary plays.
pub const ROLE_VAR: &str = "TIDELOG_TEST_ROLE";

/// The role this process was started in, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// An argument passed to a child through the environment.
pub fn arg(name: &str) -> String {
    std::env::var(format!("TIDELOG_TEST_{name}")).unwrap_or_else(|_| panic!("missing {name}"))
}

/// An integer argument passed to a child.
pub fn arg_u64(name: &str) -> u64 {
    arg(name).parse().unwrap()
}

/// Starts this test binary again, running only the (ignored) test `entry`
/// in role `role`, with `args` in its environment and stdin and stdout
/// piped (a child that reads stdin waits for the parent to write a line
/// or drop the child's stdin).
pub fn spawn(entry: &str, role: &str, args: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        entry,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(ROLE_VAR, role)
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in args {
        cmd.env(format!("TIDELOG_TEST_{k}"), v);
    }
    cmd.spawn().expect("spawn child test process")
}

/// A child process (this test binary, re-run in a role) with its
/// standard output ready for [`hear`].
pub struct Proc {
    pub child: Child,
    pub out: std::io::BufReader<std::process::ChildStdout>,
}

impl Proc {
    /// Starts the ignored test `child` in `role` (see [`spawn`]).
    pub fn spawn(role: &str, args: &[(&str, String)]) -> Proc {
        let mut child = spawn("child", role, args);
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        Proc { child, out }
    }

    /// Its process id, as `kill` takes it.
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

/// Prints a protocol line for the parent (libtest prints its own lines on
/// the same stdout, so protocol lines carry a marker).
pub fn say(msg: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {msg}").unwrap();
    out.flush().unwrap();
}

/// Tells the person running the tests something (a skip and why, a
/// figure), even from a passing test: libtest captures what `print!` and
/// `eprint!` write, but not writes to the stderr handle itself.
pub fn note(msg: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "note: {msg}");
}

/// The next protocol line from a child's stdout, or `None` at its end.
pub fn hear(from: &mut impl std::io::BufRead) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if from.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if let Some(msg) = line.trim_end().strip_prefix("@@ ") {
            return Some(msg.to_owned());
        }
    }
}

/// All remaining protocol lines from a child's stdout.
pub fn hear_all(from: &mut impl std::io::BufRead) -> Vec<String> {
    std::iter::from_fn(|| hear(from)).collect()
}

/// splitmix64: a small, good-enough PRNG for reproducible test data.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The payload of record `index` of stream `seed`: its length is drawn
/// from `0..=max_len`, its bytes from the same generator, and its first
/// bytes name the stream and index so a misplaced record is recognisable.
pub fn payload(seed: u64, index: u64, max_len: usize) -> Vec<u8> {
    let mut rng = Rng(seed.wrapping_mul(0x1000_0001).wrapping_add(index));
    let len = rng.below(max_len as u64 + 1) as usize;
    let mut out = Vec::with_capacity(len);
    while out.len() + 8 <= len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    let tail = rng.next_u64().to_le_bytes();
    out.extend_from_slice(&tail[..len - out.len()]);
    let tag = [seed.to_le_bytes(), index.to_le_bytes()].concat();
    let n = tag.len().min(len);
    out[..n].copy_from_slice(&tag[..n]);
    out
}

/// Whether the tests run as root (needed to mount file systems).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs a command and reports whether it succeeded.
pub fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Mounts a tmpfs of `size` (e.g. "4m") at `at`; false if not possible.
pub fn mount_tmpfs(at: &Path, size: &str) -> bool {
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            at.to_str().unwrap(),
        ],
    )
}

/// Unmounts `at` (lazily, so a straggling child cannot keep it busy).
pub fn unmount(at: &Path) {
    run("umount", &["-l", at.to_str().unwrap()]);
}

/// A small ext4 file system in a file, mounted through a loop device at
/// `mnt`; unmounted (which detaches the loop device) when dropped.
pub struct Ext4 {
    pub mnt: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        run("umount", &[self.mnt.to_str().unwrap()]);
    }
}

/// Mounts a fresh ext4 of `mib` MiB, or says why it cannot and returns
/// `None` (the caller prints that it skipped).
pub fn mount_ext4(mib: u64) -> Result<Ext4, String> {
    if !is_root() {
        return Err("mounting an ext4 image needs root".into());
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = tmp.path().join("fs.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(mib << 20).unwrap();
    drop(f);
    if !run("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]) {
        return Err("mkfs.ext4 failed or is missing (Debian package e2fsprogs)".into());
    }
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if !run(
        "mount",
        &["-o", "loop", img.to_str().unwrap(), mnt.to_str().unwrap()],
    ) {
        return Err("mount -o loop failed (no loop devices or no CAP_SYS_ADMIN here?)".into());
    }
    Ok(Ext4 { mnt, _tmp: tmp })
}

/// Free bytes on the file system holding `path`.
pub fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail", path.to_str().unwrap()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Where the kernel publishes the boot id tidelog compares with the one in
/// each segment header.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// Whether this machine lets a child believe the machine restarted: a
/// private mount namespace with a file bound over the boot id (root and
/// `unshare` from util-linux). `Err` says why not.
pub fn can_fake_restart() -> Result<(), String> {
    if !is_root() {
        return Err("faking a restart needs root (a mount namespace and a bind mount)".into());
    }
    let probe = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &format!("mount --bind /dev/null {BOOT_ID_PATH}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(s) if s.success() => Ok(()),
        Ok(_) => Err("unshare -m with a bind mount over the boot id failed here".into()),
        Err(_) => Err("unshare (util-linux) is missing".into()),
    }
}

/// A boot id no real boot has, in the kernel's text form.
pub fn fake_boot_id(seed: u64) -> String {
    let mut r = Rng(seed ^ 0xB007);
    let (a, b) = (r.next_u64(), r.next_u64());
    let h = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// As [`spawn`], but the child runs in a private mount namespace where
/// the kernel's boot id reads as the contents of `boot_file`: to tidelog
/// in the child, the machine restarted since the log was written.
/// Check [`can_fake_restart`] first.
pub fn spawn_restarted(
    entry: &str,
    role: &str,
    args: &[(&str, String)],
    boot_file: &Path,
) -> Child {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        &format!("mount --bind \"$0\" {BOOT_ID_PATH} && exec \"$@\""),
        boot_file.to_str().unwrap(),
        std::env::current_exe().unwrap().to_str().unwrap(),
        entry,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(ROLE_VAR, role)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    for (k, v) in args {
        cmd.env(format!("TIDELOG_TEST_{k}"), v);
    }
    cmd.spawn().expect("spawn child test process")
}

/// Options of the durability tests: small segments, small growth steps,
/// the policy `d`.
pub fn durability_options(d: tidelog::Durability) -> tidelog::Options {
    tidelog::Options::new()
        .segment_capacity(1 << 20)
        .grow_step(64 << 10)
        .durability(d)
}

/// Record `i` of producer `p`: its text form `p{p} i{i} `, then filler,
/// 40 to 89 bytes long.
pub fn tagged_record(p: u64, i: u64) -> Vec<u8> {
    let mut r = format!("p{p} i{i} ").into_bytes();
    r.resize(40 + (i % 50) as usize, b'a' + (i % 26) as u8);
    r
}
