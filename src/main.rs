//! Operator CLI and local stack (built in later issues).
fn main() {
    eprintln!("stark-pipeline: the local stack and operator commands are not built yet; see README.md");
    std::process::exit(2);
}
