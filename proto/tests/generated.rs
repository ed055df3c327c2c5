//! The committed generated code must match what the `.proto` files generate today.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use prost::Message as _;

const PROTOS: &[&str] = &[
    "cri/runtime/v1/api.proto",
    "herd/v1/node.proto",
    "herd/v1/cluster.proto",
];
/// Herd's own API, whose descriptor set is served through reflection.
const HERD_PROTOS: &[&str] = &["herd/v1/node.proto", "herd/v1/cluster.proto"];
const HERD_DESCRIPTOR_SET: &str = "herd.v1.binpb";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn generate(out_dir: &Path) {
    let root = crate_dir();
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    let fds = protox::compile(&files, [&root]).expect("the .proto files compile");
    tonic_prost_build::configure()
        .codec_path("crate::codec::SliceCodec")
        .build_client(true)
        .build_server(true)
        .out_dir(out_dir)
        .compile_fds(fds)
        .expect("code generation succeeds");
    // Imports included, so that a reflection client can resolve every type.
    let herd = protox::compile(HERD_PROTOS.iter().map(|p| root.join(p)), [&root])
        .expect("herd.v1 compiles");
    fs::write(out_dir.join(HERD_DESCRIPTOR_SET), herd.encode_to_vec())
        .expect("write the descriptor set");
}

fn read_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .expect("read generated dir")
        .map(|entry| {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).expect("read generated file"))
        })
        .collect()
}

#[test]
fn generated_code_is_up_to_date() {
    let committed_dir = crate_dir().join("src/gen");
    let fresh_dir = tempfile::tempdir().expect("temp dir");
    generate(fresh_dir.path());
    let fresh = read_dir(fresh_dir.path());

    if std::env::var_os("HERD_REGEN").is_some_and(|v| v == "1") {
        if committed_dir.exists() {
            fs::remove_dir_all(&committed_dir).expect("clear src/gen");
        }
        fs::create_dir_all(&committed_dir).expect("create src/gen");
        for (name, bytes) in &fresh {
            fs::write(committed_dir.join(name), bytes).expect("write src/gen");
        }
        return;
    }

    let committed = if committed_dir.exists() {
        read_dir(&committed_dir)
    } else {
        BTreeMap::new()
    };
    let stale: BTreeSet<&String> = fresh
        .keys()
        .chain(committed.keys())
        .filter(|name| fresh.get(*name) != committed.get(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "proto/src/gen is out of date with the .proto files ({stale:?} differ); \
         regenerate with `HERD_REGEN=1 cargo test -p herd-proto` and commit the result"
    );
}
