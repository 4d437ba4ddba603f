//! The `exosphere` executable: everything it does lives in the library (`src/lib.rs`), so
//! tests can start the same server in process.

fn main() -> std::process::ExitCode {
    exosphere::main()
}
