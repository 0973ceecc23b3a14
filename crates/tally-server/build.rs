// The dashboard's files are embedded by rust-embed-for-web's derive, which does not tell cargo
// to rebuild when they change: this does.
fn main() {
    println!("cargo:rerun-if-changed=web");
}
