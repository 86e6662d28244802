//! `cargo test --features e2e`: the cucumber scenarios of `features/`,
//! run by the library's runner (`harness::e2e`), the same one `harness
//! gate` runs in-process.

fn main() {
    harness::e2e::main(env!("CARGO_BIN_EXE_harness"))
}
