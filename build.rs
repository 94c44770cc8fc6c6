//! Compiles `proto/` with protox (pure Rust), so a build needs no system `protoc`.
use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "proto/case_escrow/v1/ledger.proto",
        "proto/case_escrow/v1/journal.proto",
        "proto/case_escrow/v1/reconciliation.proto",
        "proto/case_escrow/v1/principals.proto",
    ];
    let fds = protox::compile(files, ["proto"])?;
    // compile_fds does not write the descriptor set; reflection needs it.
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("case_escrow_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
