//! herd.v1 only ever grows: during a rolling upgrade old and new agents, aggregators and
//! clients talk to each other, so no published field, enum value or method may be removed,
//! renumbered or retyped.
//!
//! `published/herd.v1.binpb` is the descriptor set as last published. This test compares
//! the `.proto` files of today with it. After adding to the API, `HERD_REGEN=1 cargo test -p
//! herd-proto` records the additions, and only when nothing published changed.

use std::{collections::BTreeMap, fs, path::PathBuf};

use prost::Message as _;
use prost_types::{
    DescriptorProto, FileDescriptorProto, FileDescriptorSet, field_descriptor_proto::Label,
    field_descriptor_proto::Type,
};

const PUBLISHED: &str = "published/herd.v1.binpb";

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn current() -> FileDescriptorSet {
    let root = crate_dir();
    protox::compile(
        [
            root.join("herd/v1/node.proto"),
            root.join("herd/v1/cluster.proto"),
        ],
        [&root],
    )
    .expect("herd.v1 compiles")
}

/// What a client relies on, flattened: one line of meaning per key.
fn contract(set: &FileDescriptorSet) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for file in set.file.iter().filter(|f| f.package() == "herd.v1") {
        for message in &file.message_type {
            message_contract(&format!("herd.v1.{}", message.name()), message, &mut out);
        }
        for e in &file.enum_type {
            for value in &e.value {
                out.insert(
                    format!("enum herd.v1.{}.{}", e.name(), value.name()),
                    value.number().to_string(),
                );
            }
        }
        services(file, &mut out);
    }
    out
}

fn message_contract(name: &str, message: &DescriptorProto, out: &mut BTreeMap<String, String>) {
    out.insert(format!("message {name}"), String::new());
    for field in &message.field {
        let kind = Type::try_from(field.r#type.unwrap_or_default()).map_or_else(
            |_| "unknown".to_owned(),
            |t| format!("{t:?} {}", field.type_name()),
        );
        let label = Label::try_from(field.label.unwrap_or_default())
            .map_or_else(|_| "unknown".to_owned(), |l| format!("{l:?}"));
        out.insert(
            format!("field {name}.{}", field.name()),
            format!("#{} {label} {kind}", field.number()),
        );
    }
    for nested in &message.nested_type {
        message_contract(&format!("{name}.{}", nested.name()), nested, out);
    }
}

fn services(file: &FileDescriptorProto, out: &mut BTreeMap<String, String>) {
    for service in &file.service {
        for method in &service.method {
            out.insert(
                format!("rpc herd.v1.{}.{}", service.name(), method.name()),
                format!(
                    "{}{} -> {}{}",
                    if method.client_streaming() {
                        "stream "
                    } else {
                        ""
                    },
                    method.input_type(),
                    if method.server_streaming() {
                        "stream "
                    } else {
                        ""
                    },
                    method.output_type()
                ),
            );
        }
    }
}

/// Every published entry that is gone or changed.
fn breaks(published: &FileDescriptorSet, now: &FileDescriptorSet) -> Vec<String> {
    let now = contract(now);
    contract(published)
        .into_iter()
        .filter_map(|(key, was)| match now.get(&key) {
            None => Some(format!("{key} ({was}) was removed")),
            Some(is) if *is != was => Some(format!("{key} was `{was}`, is `{is}`")),
            Some(_) => None,
        })
        .collect()
}

fn published() -> FileDescriptorSet {
    let bytes = fs::read(crate_dir().join(PUBLISHED)).expect("the published descriptor set");
    FileDescriptorSet::decode(bytes.as_slice()).expect("the published descriptor set decodes")
}

#[test]
fn nothing_published_is_removed_renumbered_or_retyped() {
    let (published, now) = (published(), current());
    let broken = breaks(&published, &now);
    assert!(
        broken.is_empty(),
        "herd.v1 must only grow, so that mixed versions keep talking during a rolling \
         upgrade; add a new field or method instead:\n  {}",
        broken.join("\n  ")
    );
    let added = contract(&now).len() - contract(&published).len();
    if std::env::var_os("HERD_REGEN").is_some_and(|v| v == "1") {
        fs::write(crate_dir().join(PUBLISHED), now.encode_to_vec()).expect("write");
        return;
    }
    assert_eq!(
        added, 0,
        "herd.v1 has {added} additions that are not recorded in {PUBLISHED}; record them \
         with `HERD_REGEN=1 cargo test -p herd-proto`"
    );
}

/// The check itself: each kind of break is caught.
#[test]
fn a_removed_renumbered_or_retyped_field_is_caught() {
    let published = current();
    let edit = |change: &dyn Fn(&mut DescriptorProto)| {
        let mut set = published.clone();
        let file = set
            .file
            .iter_mut()
            .find(|f| f.package() == "herd.v1")
            .unwrap();
        let finding = file
            .message_type
            .iter_mut()
            .find(|m| m.name() == "Finding")
            .unwrap();
        change(finding);
        breaks(&published, &set)
    };
    let removed = edit(&|m| m.field.retain(|f| f.name() != "pod"));
    assert_eq!(
        removed,
        ["field herd.v1.Finding.pod (#4 Optional String ) was removed"]
    );
    let renumbered = edit(&|m| {
        m.field
            .iter_mut()
            .find(|f| f.name() == "pod")
            .unwrap()
            .number = Some(99);
    });
    assert_eq!(renumbered.len(), 1, "{renumbered:?}");
    let retyped = edit(&|m| {
        m.field
            .iter_mut()
            .find(|f| f.name() == "peak_score")
            .unwrap()
            .r#type = Some(Type::Float as i32);
    });
    assert_eq!(retyped.len(), 1, "{retyped:?}");
    let added = edit(&|m| {
        let mut extra = m.field[0].clone();
        extra.name = Some("extra".into());
        extra.number = Some(100);
        m.field.push(extra);
    });
    assert!(added.is_empty(), "adding is allowed: {added:?}");
}
