//! `cargo xtask bench`: benchmarks of the gateway (to be written).
fn main() {
    println!("bench: not implemented yet");
}
