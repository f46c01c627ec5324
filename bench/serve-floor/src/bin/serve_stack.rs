//! The floor of serve's rows with serve's own accept loop, connection
//! limits and middleware: `/auth` answers 200 without checking a key.
//!
//!     serve-stack 127.0.0.1:PORT

// The allocator serve runs with, so that the floor differs from serve only
// by the check.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: serve-stack ADDRESS"))?
        .parse()?;
    keyhost::serve::run_floor(listen)
}
