//! Builds the lab's two images from what is installed on the host and imports them into
//! containerd: a static pause binary (the sandbox image), and a tools image with busybox,
//! stress-ng and curl plus the shared libraries they load.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use super::{
    LabError,
    cmd::{self, step},
    oci::{Entry, Image},
    paths::{CRI_NAMESPACE, LabPaths, PAUSE_IMAGE, TOOLS_IMAGE},
};

/// The sandbox process: holds the pod's namespaces until it is told to stop, and reaps
/// orphans when the pod shares one PID namespace.
const PAUSE_C: &str = r#"#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void) {
    signal(SIGINT, stop);
    signal(SIGTERM, stop);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
"#;

/// Programs of the tools image besides busybox, at their host paths.
const TOOLS: &[&str] = &["/usr/bin/stress-ng", "/usr/bin/curl"];
const BUSYBOX: &str = "/bin/busybox";

/// Builds both images into the lab's build directory and imports them.
pub fn build_and_import(paths: &LabPaths) -> Result<(), LabError> {
    let dir = paths.build_dir();
    fs::create_dir_all(&dir).map_err(LabError::io(&dir))?;
    let pause = dir.join("pause.tar");
    let tools = dir.join("tools.tar");
    step(format!("building {PAUSE_IMAGE} (static pause binary)"));
    pause_image(&dir)?.write(&pause)?;
    step(format!("building {TOOLS_IMAGE} (busybox, stress-ng, curl)"));
    tools_image()?.write(&tools)?;
    for archive in [&pause, &tools] {
        import(paths, archive)?;
    }
    Ok(())
}

/// Imports an OCI image archive into the lab's containerd, where CRI finds it.
pub(crate) fn import(paths: &LabPaths, archive: &Path) -> Result<(), LabError> {
    step(format!("importing {}", archive.display()));
    cmd::run(
        Command::new("ctr")
            .args(["-n", CRI_NAMESPACE, "--address"])
            .arg(paths.socket())
            .args(["images", "import"])
            .arg(archive),
    )?;
    Ok(())
}

fn pause_image(dir: &Path) -> Result<Image, LabError> {
    let source = dir.join("pause.c");
    let binary = dir.join("pause");
    fs::write(&source, PAUSE_C).map_err(LabError::io(&source))?;
    cmd::run(
        Command::new("gcc")
            .args(["-static", "-Os", "-s", "-o"])
            .arg(&binary)
            .arg(&source),
    )?;
    Ok(Image {
        name: PAUSE_IMAGE.to_owned(),
        entries: vec![file(&binary, "pause", 0o755)?],
        entrypoint: vec!["/pause".to_owned()],
        env: Vec::new(),
    })
}

fn tools_image() -> Result<Image, LabError> {
    let mut entries = vec![
        dir("bin", 0o755),
        dir("usr", 0o755),
        dir("usr/bin", 0o755),
        dir("etc", 0o755),
        dir("tmp", 0o1777),
        Entry::File {
            path: "etc/passwd".to_owned(),
            mode: 0o644,
            data: b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
                .to_vec(),
        },
        Entry::File {
            path: "etc/group".to_owned(),
            mode: 0o644,
            data: b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        },
        file(Path::new(BUSYBOX), "bin/busybox", 0o755)?,
    ];
    let applets = cmd::output(Command::new(BUSYBOX).arg("--list"))?;
    // Debian's busybox lists itself among its applets: that link would replace the binary.
    for applet in applets
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        entries.push(Entry::Symlink {
            path: format!("bin/{applet}"),
            target: "busybox".to_owned(),
        });
    }

    let tools: Vec<(&Path, &str)> = TOOLS.iter().map(|t| (Path::new(*t), &t[1..])).collect();
    let library_path = add_programs(&mut entries, &tools)?;
    Ok(Image {
        name: TOOLS_IMAGE.to_owned(),
        entries,
        entrypoint: Vec::new(),
        env: vec![
            "PATH=/usr/bin:/bin".to_owned(),
            // No ld.so.cache in the image: say where the libraries are.
            format!("LD_LIBRARY_PATH={library_path}"),
        ],
    })
}

/// Adds `programs` (host path, path in the image) to `entries` with exactly the shared
/// libraries they load (per `ldd`) at their host paths, and the directories all of them need.
/// Directories come first, as a layer needs them before their files. Returns the library
/// directories as an `LD_LIBRARY_PATH` value: an image made this way has no ld.so.cache.
pub(crate) fn add_programs(
    entries: &mut Vec<Entry>,
    programs: &[(&Path, &str)],
) -> Result<String, LabError> {
    let mut libraries = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    for (host, path) in programs {
        entries.push(file(host, path, 0o755)?);
        libraries.extend(shared_libraries(host)?);
        for ancestor in Path::new(path).ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() {
                dirs.insert(Path::new("/").join(ancestor));
            }
        }
    }
    for library in &libraries {
        for ancestor in library.ancestors().skip(1) {
            if ancestor != Path::new("/") {
                dirs.insert(ancestor.to_path_buf());
            }
        }
    }
    for d in &dirs {
        let path = d.to_string_lossy()[1..].to_owned();
        if !entries
            .iter()
            .any(|e| matches!(e, Entry::Dir { path: p, .. } if *p == path))
        {
            entries.push(dir(&path, 0o755));
        }
    }
    // Directories must precede their files in a layer (the sort is stable, and
    // `BTreeSet` order puts parents before children).
    entries.sort_by_key(|e| !matches!(e, Entry::Dir { .. }));
    for library in &libraries {
        entries.push(file(library, &library.to_string_lossy()[1..], 0o755)?);
    }
    Ok(dirs
        .iter()
        .filter(|d| libraries.iter().any(|l| l.parent() == Some(d.as_path())))
        .map(|d| d.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":"))
}

/// The shared libraries `binary` loads, with the dynamic loader, per `ldd`.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, LabError> {
    let out = cmd::output(Command::new("ldd").arg(binary))?;
    let mut libraries = Vec::new();
    for line in out.lines().map(str::trim) {
        if line.starts_with("linux-vdso") {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        match path {
            Some(path) if path.starts_with('/') => libraries.push(PathBuf::from(path)),
            _ => return Err(LabError::Library(binary.to_owned(), line.to_owned())),
        }
    }
    Ok(libraries)
}

fn dir(path: &str, mode: u32) -> Entry {
    Entry::Dir {
        path: path.to_owned(),
        mode,
    }
}

/// A host file's content (symlinks followed) at `path` in the image.
fn file(host: &Path, path: &str, mode: u32) -> Result<Entry, LabError> {
    Ok(Entry::File {
        path: path.to_owned(),
        mode,
        data: fs::read(host).map_err(LabError::io(host))?,
    })
}
