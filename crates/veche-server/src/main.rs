//! `veche`: the meeting server in one binary (see the library crate for everything).

fn main() -> std::process::ExitCode {
    veche_server::run_cli()
}
