//! Composes the floor of the gate's speed rows: bench/floor's middleware
//! (built with its `gate` feature), which checks nothing, in front of an
//! app, through the gate's virtual HTTP types, as `keyhost gate build
//! --app` composes the real gate:
//!
//!     cargo run --release --example gate_floor -- \
//!         --middleware floor.wasm --app app.wasm -o gate-floor.wasm

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

#[derive(Parser)]
#[command(about = "Compose a gate that checks nothing in front of an app, for the benchmarks")]
struct Args {
    /// The middleware component (bench/floor, feature `gate`).
    #[arg(long)]
    middleware: PathBuf,
    /// The app component behind it.
    #[arg(long)]
    app: PathBuf,
    /// Where to write the composed component.
    #[arg(short, long)]
    output: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let read = |path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let composed = keyhost::gate::compose_floor(&read(&args.middleware)?, &read(&args.app)?)?;
    std::fs::write(&args.output, composed)
        .with_context(|| format!("cannot write {}", args.output.display()))
}
