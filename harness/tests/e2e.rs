//! Cucumber runner for `features/` (`cargo test --features e2e`).

fn main() {
    eprintln!("e2e runner not implemented yet");
}
