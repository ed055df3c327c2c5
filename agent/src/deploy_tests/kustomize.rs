//! `deploy/`'s kustomizations built with `kubectl kustomize` and parsed into the Kubernetes
//! API types. Shared by the tests of both binaries (`herd-aggregator` includes this file).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The workspace's `deploy/`.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `kubectl kustomize` of a directory below `deploy/`, as JSON values, one per object.
pub fn kustomize(dir: &str) -> Vec<serde_json::Value> {
    let path = deploy_dir().join(dir);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&path)
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run kubectl ({err}): `cargo xtask setup` installs Debian's kubectl")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("kustomize writes UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let yaml = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc)
                .expect("kustomize writes YAML");
            serde_json::to_value(yaml).expect("YAML objects are JSON objects")
        })
        .collect()
}

/// The object of `kind`, parsed into its API type; fields the type does not have are
/// errors (serde alone would drop them: a misspelt `readOnly` would pass unseen).
pub fn parse<T>(objects: &[serde_json::Value], kind: &str) -> T
where
    T: serde::de::DeserializeOwned + serde::Serialize,
{
    let value = objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the build"));
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|err| panic!("the {kind} is not a valid {kind}: {err}"));
    let back = serde_json::to_value(&typed).expect("API types serialize");
    let mut unknown = Vec::new();
    unknown_fields(value, &back, kind, &mut unknown);
    assert!(
        unknown.is_empty(),
        "fields the API does not have: {unknown:?}"
    );
    typed
}

fn unknown_fields(
    given: &serde_json::Value,
    typed: &serde_json::Value,
    at: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (given, typed) {
        (Value::Object(given), Value::Object(typed)) => {
            for (key, value) in given {
                match typed.get(key) {
                    Some(back) => unknown_fields(value, back, &format!("{at}.{key}"), out),
                    None => out.push(format!("{at}.{key}")),
                }
            }
        }
        (Value::Array(given), Value::Array(typed)) => {
            for (i, (value, back)) in given.iter().zip(typed).enumerate() {
                unknown_fields(value, back, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}
