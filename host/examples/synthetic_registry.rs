//! Writes a registry of N keys for the benchmarks, and the secrets of a few
//! of them (one per line, mode 0600), with a progress line per step:
//!
//!     cargo run --release --example synthetic_registry -- --keys 1000000 \
//!         --registry bench/work/1m.toml --secrets bench/work/1m.secrets

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use keyhost::registry::RegistryFile;

#[derive(Parser)]
#[command(about = "Write a synthetic keyhost registry for the benchmarks")]
struct Args {
    /// How many keys.
    #[arg(long)]
    keys: usize,
    /// The registry to create (it must not exist).
    #[arg(long)]
    registry: PathBuf,
    /// Where to write the sample secrets (it must not exist).
    #[arg(long)]
    secrets: PathBuf,
    /// How many secrets to keep.
    #[arg(long, default_value_t = 16)]
    samples: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    eprintln!("synthetic registry: generating {} keys", args.keys);
    let synthetic = keyhost::synthetic::registry(args.keys, args.samples);
    eprintln!(
        "synthetic registry: writing {} ({:.1} s so far)",
        args.registry.display(),
        started.elapsed().as_secs_f64()
    );
    RegistryFile::new(&args.registry).create(&synthetic.registry)?;
    let mut secrets = synthetic.secrets.join("\n");
    secrets.push('\n');
    keyhost::durable::create_new(&args.secrets, secrets.as_bytes())?;
    eprintln!(
        "synthetic registry: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
