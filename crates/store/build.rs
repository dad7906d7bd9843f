// `sqlx::migrate!` embeds the migrations when this crate compiles: rebuild when one is added
// or changed, not only when a source file is.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
