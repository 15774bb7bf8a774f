//! What a native program (and its `setup`) may reach.
//!
//! - A cleared environment: `PATH`, `LANG`, a private `HOME` and `TMPDIR` in a scratch directory
//!   made for that program, the protocol's own `CRPC_*` values and the names the operator passes
//!   with `--pass-env`. The processor's token and anything else it was started with stay out.
//! - On Linux, a Landlock rule set where the kernel has one: read (and execute) the package
//!   directory, the system directories and the `PATH` directories; read and write the scratch
//!   directory (and the package directory while `setup` builds it). One log line says when the
//!   kernel cannot enforce it.
//! - A process tree that dies whole. The program is started through a launcher (the running
//!   binary itself, with [`LAUNCHER_ARG`]) that becomes a child subreaper, so descendants that
//!   `setsid` and lose their parent stay below it; [`kill_tree`] kills everything below the
//!   launcher, then the launcher.
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `argv[1]` that turns a crpc binary into the sandbox launcher (see [`launcher_main`]).
pub const LAUNCHER_ARG: &str = "__crpc-sandbox-exec";

/// Environment names every native program gets from the processor, when set there.
const BASE_ENV: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "PYENV_ROOT",
    "PYENV_VERSION",
];

/// System directories a native program may read and execute from.
const SYSTEM_RO: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/nix",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/dev/urandom",
    "/dev/random",
];

/// Device files a native program may write.
const DEVICES_RW: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// How native packages are started on this processor.
#[derive(Debug, Clone)]
pub struct NativePolicy {
    /// `false` with `--no-native`: native packages are refused.
    pub allowed: bool,
    /// Apply Landlock where the kernel has it (`--no-landlock` turns it off).
    pub landlock: bool,
    /// More environment names passed through (`--pass-env`).
    pub pass_env: Vec<String>,
    /// More directories native programs may read (`--sandbox-read`).
    pub read_only: Vec<PathBuf>,
    /// Directories whose files native programs may read by name but not list (the task-file
    /// cache: a program reads the files its tasks name, and cannot find the others').
    pub read_by_name: Vec<PathBuf>,
    /// Where scratch directories are made.
    pub scratch_root: PathBuf,
    /// The binary that acts as launcher (the running one).
    pub launcher: PathBuf,
}

impl NativePolicy {
    /// The policy for a processor whose cache is at `cache_root`.
    pub fn new(cache_root: &Path) -> NativePolicy {
        NativePolicy {
            allowed: true,
            landlock: true,
            pass_env: Vec::new(),
            read_only: Vec::new(),
            read_by_name: Vec::new(),
            scratch_root: cache_root.join("scratch"),
            launcher: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("task-processor")),
        }
    }

    /// A `tokio` command that runs `program args` in `dir` under this policy, with a fresh
    /// scratch directory (removed when the returned guard drops). `writable_dir` lets `setup`
    /// build the package directory.
    pub fn command(
        &self,
        program: &Path,
        args: &[String],
        dir: &Path,
        writable_dir: bool,
        extra_env: &[(&str, String)],
    ) -> std::io::Result<(tokio::process::Command, Scratch)> {
        let scratch = Scratch::new(&self.scratch_root)?;
        let mut cmd = tokio::process::Command::new(&self.launcher);
        cmd.arg(LAUNCHER_ARG);
        if self.landlock {
            for ro in self.readable(dir, writable_dir) {
                cmd.arg("--ro").arg(ro);
            }
            for dir in &self.read_by_name {
                cmd.arg("--read-files").arg(dir);
            }
            cmd.arg("--rw").arg(scratch.path());
            for dev in DEVICES_RW {
                cmd.arg("--rw").arg(dev);
            }
            if writable_dir {
                cmd.arg("--rw").arg(dir);
            }
        }
        cmd.arg("--").arg(program).args(args).current_dir(dir);
        cmd.env_clear().envs(self.environment(&scratch, extra_env));
        Ok((cmd, scratch))
    }

    fn readable(&self, dir: &Path, writable_dir: bool) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = SYSTEM_RO.iter().map(PathBuf::from).collect();
        out.extend(self.read_only.iter().cloned());
        if let Some(path) = std::env::var_os("PATH") {
            out.extend(std::env::split_paths(&path));
        }
        if let Some(root) = std::env::var_os("PYENV_ROOT") {
            out.push(PathBuf::from(root));
        }
        if !writable_dir {
            out.push(dir.to_path_buf());
        }
        out
    }

    fn environment(
        &self,
        scratch: &Scratch,
        extra: &[(&str, String)],
    ) -> HashMap<String, OsString> {
        let mut env: HashMap<String, OsString> = BASE_ENV
            .iter()
            .map(|s| s.to_string())
            .chain(self.pass_env.iter().cloned())
            .filter_map(|k| std::env::var_os(&k).map(|v| (k, v)))
            .collect();
        env.entry("PATH".into())
            .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
        env.entry("LANG".into()).or_insert_with(|| "C.UTF-8".into());
        env.insert("HOME".into(), scratch.home().into());
        env.insert("TMPDIR".into(), scratch.tmp().into());
        for (k, v) in extra {
            env.insert(k.to_string(), v.into());
        }
        env
    }
}

/// A private directory (`home/`, `tmp/`) for one native program; removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    fn new(root: &Path) -> std::io::Result<Scratch> {
        let dir = root.join(format!("{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(dir.join("home"))?;
        std::fs::create_dir_all(dir.join("tmp"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Scratch(dir))
    }

    /// The scratch directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    fn home(&self) -> PathBuf {
        self.0.join("home")
    }

    fn tmp(&self) -> PathBuf {
        self.0.join("tmp")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills the launcher `pid` and every process below it (descendants first, in rounds until
/// none is left, so a process forking while it dies is caught too).
pub fn kill_tree(pid: u32) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for _ in 0..20 {
        let below = descendants(pid);
        if below.is_empty() {
            break;
        }
        for p in below {
            let _ = kill(Pid::from_raw(p as i32), Signal::SIGKILL);
        }
    }
    let _ = nix::sys::signal::killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Live processes below `root`, from the parent links in `/proc` (empty elsewhere).
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, ppid) in process_table() {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// `(pid, ppid)` of every live (not zombie) process.
fn process_table() -> Vec<(u32, u32)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
            let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
            let state = rest.next()?;
            let ppid = rest.next()?.parse().ok()?;
            (state != "Z").then_some((pid, ppid))
        })
        .collect()
}

/// Whether this kernel enforces Landlock, asked once by starting the launcher in probe mode.
pub fn probe_landlock(policy: &NativePolicy) -> Option<String> {
    let out = std::process::Command::new(&policy.launcher)
        .args([LAUNCHER_ARG, "--probe"])
        .env_clear()
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The launcher: when `argv[1]` is [`LAUNCHER_ARG`], confine this process (Landlock rules from
/// `--ro`/`--rw`), become a child subreaper, run the program after `--`, reap everything below,
/// and return the program's exit code. `None` when this is not a launcher invocation.
pub fn launcher_main() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != LAUNCHER_ARG {
        return None;
    }
    let (mut ro, mut rw, mut probe) = (Vec::new(), Vec::new(), false);
    let (mut files, mut program) = (Vec::new(), Vec::new());
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--ro") => ro.extend(args.next()),
            Some("--read-files") => files.extend(args.next()),
            Some("--rw") => rw.extend(args.next()),
            Some("--probe") => probe = true,
            Some("--") => {
                program.extend(args.by_ref());
                break;
            }
            _ => return Some(fail(&format!("unknown argument {a:?}"))),
        }
    }
    let enforced = confine(&Rules { ro, files, rw }, probe);
    if probe {
        println!("{enforced}");
        return Some(0);
    }
    Some(run_reaping(&program))
}

fn fail(why: &str) -> i32 {
    eprintln!("crpc sandbox: {why}");
    126
}

/// The launcher's Landlock rules: read, read files by name (no listing), read and write.
struct Rules {
    ro: Vec<OsString>,
    files: Vec<OsString>,
    rw: Vec<OsString>,
}

#[cfg(target_os = "linux")]
fn confine(rules: &Rules, probe: bool) -> String {
    use landlock::{
        path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, ABI,
    };
    let Rules { ro, files, rw } = rules;
    if ro.is_empty() && rw.is_empty() && !probe {
        return "off".into();
    }
    let abi = ABI::V5;
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(ro, AccessFs::from_read(abi))))
        .and_then(|r| r.add_rules(path_beneath_rules(files, AccessFs::ReadFile)))
        .and_then(|r| r.add_rules(path_beneath_rules(rw, AccessFs::from_all(abi))))
        .and_then(|r| r.restrict_self());
    match status.map(|s| s.ruleset) {
        Ok(RulesetStatus::FullyEnforced) => "enforced".into(),
        Ok(RulesetStatus::PartiallyEnforced) => "partially enforced".into(),
        Ok(RulesetStatus::NotEnforced) => "not supported by this kernel".into(),
        Err(e) => format!("failed: {e}"),
    }
}

#[cfg(not(target_os = "linux"))]
fn confine(_rules: &Rules, _probe: bool) -> String {
    "not available on this system".into()
}

/// Runs the program as a child, reaps every process that ends below this one, and when the
/// program exits kills what it left behind; its exit code (128 + signal when killed).
fn run_reaping(program: &[OsString]) -> i32 {
    let Some((prog, args)) = program.split_first() else {
        return fail("no program after --");
    };
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let child = match std::process::Command::new(prog).args(args).spawn() {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot start {prog:?}: {e}")),
    };
    let main = child.id() as i32;
    let code = reap_until(main);
    for p in descendants(std::process::id()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    while nix::sys::wait::wait().is_ok() {}
    code
}

/// Waits for children until `main` exits; its exit code.
fn reap_until(main: i32) -> i32 {
    use nix::sys::wait::{wait, WaitStatus};
    loop {
        match wait() {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == main => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == main => {
                return 128 + sig as i32
            }
            Ok(_) => {}
            Err(_) => return fail("lost the program"),
        }
    }
}
