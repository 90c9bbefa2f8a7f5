//! Writes the seed corpus (`veche_fuzz::corpus::seeds`) to `fuzz/corpus/<target>/`, or to
//! the directory given as the first argument. Files already there (crashers, inputs
//! libFuzzer kept) are left alone; seeds are overwritten.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let root = std::env::args_os()
        .nth(1)
        .map_or_else(veche_fuzz::stable::corpus_root, PathBuf::from);
    let seeds = veche_fuzz::corpus::seeds();
    for (target, name, bytes) in &seeds {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)?;
    }
    println!("wrote {} seeds under {}", seeds.len(), root.display());
    Ok(())
}
