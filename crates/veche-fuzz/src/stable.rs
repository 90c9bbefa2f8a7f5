//! A bounded, deterministic fuzz loop for stable Rust: every file of a target's committed
//! corpus, then inputs mutated from it by a seeded RNG (bit flips, byte changes, inserted
//! and deleted ranges, splices of two seeds, JSON and integer edge cases). Not coverage
//! guided — that is what `fuzz/` (libFuzzer) is for — but the same target bodies, so any
//! input that libFuzzer or this loop finds is a test case for both.
//!
//! A panic in the target is reported with the input (written to a file whose path is
//! printed) and then propagated: the test fails.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::PathBuf;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Where the committed corpus is: `fuzz/corpus/` at the top of the repository.
pub fn corpus_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus")
}

/// The files of `target`'s corpus, by name.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_root().join(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading corpus {}: {e}", dir.display()))
        .map(|e| {
            let e = e.expect("corpus entry");
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(e.path()).expect("corpus file");
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

/// What one bounded run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub corpus_inputs: usize,
    pub mutated_inputs: usize,
}

const TOKENS: [&[u8]; 16] = [
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"\"\\u0000\"",
    b"\"type\"",
    b"\xff",
    b"\x00\x00",
];

/// Runs `body` on every corpus file of `target`, then on `iterations` mutated inputs from
/// the RNG seeded with `seed`.
pub fn run_bounded(target: &str, body: fn(&[u8]), iterations: usize, seed: u64) -> Report {
    let seeds = corpus(target);
    for (name, input) in &seeds {
        check(target, name, body, input);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    for i in 0..iterations {
        let input = mutate(&mut rng, &seeds);
        check(
            target,
            &format!("mutation {i} of seed {seed}"),
            body,
            &input,
        );
    }
    Report {
        corpus_inputs: seeds.len(),
        mutated_inputs: iterations,
    }
}

fn check(target: &str, what: &str, body: fn(&[u8]), input: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(input))) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-failures");
        let path = dir.join(format!("{target}-{:016x}", fnv(input)));
        let saved = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&path, input))
            .map_or_else(
                |e| format!("(not saved: {e})"),
                |()| path.display().to_string(),
            );
        eprintln!(
            "fuzz target {target} panicked on {what} ({} bytes, saved to {saved}): {:?}",
            input.len(),
            String::from_utf8_lossy(&input[..input.len().min(300)])
        );
        resume_unwind(panic);
    }
}

/// FNV-1a, to name a failing input by its contents.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One input: a seed (or nothing) with one to eight mutations.
pub fn mutate(rng: &mut StdRng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut d = if seeds.is_empty() || rng.random_ratio(1, 20) {
        Vec::new()
    } else {
        seeds[rng.random_range(0..seeds.len())].1.clone()
    };
    for _ in 0..rng.random_range(1..=8) {
        let len = d.len();
        match rng.random_range(0..9) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                d[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                d[i] = [0, 0xff, 0x7f, 0x80, 1, rng.random()][rng.random_range(0..6)];
            }
            2 => {
                let i = rng.random_range(0..=len);
                let n = rng.random_range(1..=16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                d.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(32));
                d.drain(i..i + n);
            }
            4 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=(len - i).min(64));
                let copy = d[i..i + n].to_vec();
                let at = rng.random_range(0..=len);
                d.splice(at..at, copy);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[rng.random_range(0..seeds.len())].1;
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..=other.len());
                d.truncate(cut);
                d.extend_from_slice(&other[from..]);
            }
            6 => {
                let i = rng.random_range(0..=len);
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                d.splice(i..i, t.iter().copied());
            }
            7 if len > 0 => d.truncate(rng.random_range(0..len)),
            8 if len >= 2 => {
                // A length-like field: two bytes set to an edge value.
                let i = rng.random_range(0..len - 1);
                let v: u16 = [0, 1, 0xffff, 0x8000, 0x7fff, len as u16][rng.random_range(0..6)];
                d[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
    d.truncate(8192);
    d
}
