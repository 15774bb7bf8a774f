//! The path a new user takes: `crpc dev` (its built-in processor, default slots) and
//! `crpc map testkit.noop` over a file of inputs, timed from the command's start until its last
//! result line; every line must be a success.
use std::io::Write;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{bail, Context};
use crpc_tests::Dev;

/// `crpc map` of `n` no-op inputs against a fresh `crpc dev`; tasks per second.
pub fn run(n: usize) -> anyhow::Result<f64> {
    let dev = Dev::start_with_args(&[]);
    // Installs the package and warms the processor's instances.
    map(&dev, 1000)?;
    eprintln!("crpc dev: crpc map over {n} no-op inputs…");
    let t = Instant::now();
    map(&dev, n)?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn map(dev: &Dev, n: usize) -> anyhow::Result<()> {
    let inputs = dev.dir.path().join(format!("inputs-{n}.jsonl"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&inputs)?);
    for _ in 0..n {
        writeln!(f, "[]")?;
    }
    f.flush()?;
    drop(f);
    let out = dev
        .command(&crpc_tests::sibling_binary("crpc").display().to_string())
        .args(["map", "testkit.noop", "--inputs"])
        .arg(&inputs)
        .stderr(Stdio::inherit())
        .output()
        .context("crpc map")?;
    if !out.status.success() {
        bail!(
            "crpc map failed ({}); crpc dev log: {}",
            out.status,
            dev.log()
        );
    }
    let text = String::from_utf8(out.stdout)?;
    let lines = text.lines().count();
    let ok = text
        .lines()
        .filter(|l| l.contains("\"state\":\"succeeded\""))
        .count();
    if lines != n || ok != n {
        bail!("crpc map: {lines} result lines, {ok} succeeded, of {n}");
    }
    Ok(())
}
