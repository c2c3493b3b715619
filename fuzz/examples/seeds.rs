//! Writes the seed corpora: `cargo run --example seeds` in `fuzz/` (after the PKI fixture,
//! which it makes when missing). Seeds are named `seed-<name>`; inputs libFuzzer found are
//! left alone.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    symphony_fuzz::fixture::ensure()?;
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, seeds) in symphony_fuzz::seeds::all() {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        }
        println!("{target}: {} seeds", seeds.len());
    }
    Ok(())
}
