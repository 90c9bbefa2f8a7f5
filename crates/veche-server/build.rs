//! Re-embed the web client when any file under `web/` changes, is added or removed:
//! rust-embed alone only notices edits to files that existed at the last build. The same
//! for the SQL migrations that `sqlx::migrate!` embeds.

fn main() {
    println!("cargo:rerun-if-changed=../../web");
    println!("cargo:rerun-if-changed=migrations");
}
