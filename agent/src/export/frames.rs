//! Live feature frames written as CSV (`ts,node,domain,entity,<feature…>`), the format
//! `herd-agent replay` reads, so that a live run can be scored again offline.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;

#[derive(Debug, Error)]
#[error("writing feature frames: {0}")]
pub struct FrameError(#[from] csv::Error);

impl From<io::Error> for FrameError {
    fn from(err: io::Error) -> Self {
        Self(err.into())
    }
}

/// One row of a frame file.
pub struct FrameRow<'a> {
    pub node: &'a str,
    pub domain: &'a str,
    pub entity: &'a str,
    pub values: &'a [Option<f64>],
}

/// Where frames go, a whole window at a time.
pub trait FrameSink: Send {
    /// Writes the header line that starts the output.
    fn start(&mut self, header: &[u8]) -> io::Result<()>;
    /// Appends one window's rows.
    fn append(&mut self, header: &[u8], window: &[u8]) -> io::Result<()>;
}

/// Frames written on as they come, to any writer (a pipe, a buffer in tests).
pub struct FrameStream<W>(pub W);

impl<W: Write + Send> FrameSink for FrameStream<W> {
    fn start(&mut self, header: &[u8]) -> io::Result<()> {
        self.0.write_all(header)?;
        self.0.flush()
    }

    fn append(&mut self, _: &[u8], window: &[u8]) -> io::Result<()> {
        self.0.write_all(window)?;
        self.0.flush()
    }
}

/// How large `--record` files grow, and how many old ones are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// A file is rotated before a window would take it past this size; 0 never rotates.
    pub max_bytes: u64,
    /// Old files kept beside the current one: `frames.csv.1` (the newest) to `.<keep>`.
    pub keep: u32,
}

/// `--record`'s files: created mode 0600 (the frames name every pod of the node), rotated at a
/// size, each file a frame file of its own that begins with the header, so that `replay`
/// reads any of them. A window that cannot be written whole is cut off again, so that the
/// file stays valid when the disk has room again.
pub struct RecordFiles {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    /// Bytes of whole lines in the current file.
    len: u64,
}

impl RecordFiles {
    /// Creates (or empties) the file at `path`; the old files stay until rotation replaces
    /// them.
    pub fn create(path: &Path, rotation: Rotation) -> io::Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            rotation,
            file: create_private(path)?,
            len: 0,
        })
    }

    /// `frames.csv` → `frames.csv.1` → … → `frames.csv.<keep>`, the oldest dropped; then a new
    /// `frames.csv`.
    fn rotate(&mut self) -> io::Result<()> {
        let old = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.rotation.keep == 0 {
            fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.rotation.keep).rev() {
                match fs::rename(old(n), old(n + 1)) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
                    _ => {}
                }
            }
            fs::rename(&self.path, old(1))?;
        }
        self.file = create_private(&self.path)?;
        self.len = 0;
        Ok(())
    }

    fn write_whole(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(err) => {
                // Part of the window may be on the disk: cut it off, which also frees the
                // room it took. The file is written with O_APPEND, so the next write goes at
                // the new end.
                let _ = self.file.set_len(self.len);
                Err(err)
            }
        }
    }
}

impl FrameSink for RecordFiles {
    fn start(&mut self, header: &[u8]) -> io::Result<()> {
        self.write_whole(header)
    }

    fn append(&mut self, header: &[u8], window: &[u8]) -> io::Result<()> {
        let header_len = header.len() as u64;
        let max = self.rotation.max_bytes;
        // A file with rows in it is rotated before this window would take it past the limit;
        // a window larger than the limit goes alone in a file of its own.
        if max > 0 && self.len > header_len && self.len + window.len() as u64 > max {
            self.rotate()?;
        }
        if self.len == 0 {
            // A new file, or one whose header did not fit on the disk before.
            self.write_whole(header)?;
        }
        self.write_whole(window)
    }
}

/// A file only root reads, appended to.
fn create_private(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through open: make it private, and empty.
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.set_len(0)?;
    Ok(file)
}

/// A size as `--record-max-size` takes it: bytes, or with a binary suffix (`K`/`KiB`,
/// `M`/`MiB`, `G`/`GiB`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 64MiB"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (K, M or G, powers of 1024)"
            ));
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Feature frames as CSV, a window at a time, into a [`FrameSink`].
pub struct FrameWriter {
    out: Box<dyn FrameSink>,
    header: Vec<u8>,
}

impl FrameWriter {
    /// Starts a frame output with its header.
    pub fn new(mut out: Box<dyn FrameSink>, features: &[String]) -> Result<Self, FrameError> {
        let mut header = csv::Writer::from_writer(Vec::new());
        header.write_record(
            ["ts", "node", "domain", "entity"]
                .into_iter()
                .chain(features.iter().map(String::as_str)),
        )?;
        let header = header.into_inner().map_err(|err| err.into_error())?;
        out.start(&header)?;
        Ok(Self { out, header })
    }

    /// Writes one window: every row gets the same `ts` (seconds since the epoch). The window
    /// is written whole or not at all.
    pub fn window<'a>(
        &mut self,
        ts: f64,
        rows: impl IntoIterator<Item = FrameRow<'a>>,
    ) -> Result<(), FrameError> {
        let ts = format!("{ts:.3}");
        let mut window = csv::Writer::from_writer(Vec::new());
        for row in rows {
            let values = row
                .values
                .iter()
                .map(|value| value.map(|v| v.to_string()).unwrap_or_default());
            let record = [
                ts.clone(),
                row.node.to_owned(),
                row.domain.to_owned(),
                row.entity.to_owned(),
            ]
            .into_iter()
            .chain(values);
            window.write_record(record)?;
        }
        let window = window.into_inner().map_err(|err| err.into_error())?;
        if window.is_empty() {
            return Ok(());
        }
        // A window at a time reaches the disk, so a killed agent loses at most one.
        self.out.append(&self.header, &window)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::fs::PermissionsExt as _,
        sync::{Arc, Mutex},
    };

    use super::*;

    /// A frame output in memory.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn row<'a>(entity: &'a str, values: &'a [Option<f64>]) -> FrameRow<'a> {
        FrameRow {
            node: "n1",
            domain: "shop/Deployment/web/app",
            entity,
            values,
        }
    }

    #[test]
    fn header_then_one_row_per_entity_with_empty_missing_cells() {
        let buf = Shared::default();
        let mut writer = FrameWriter::new(
            Box::new(FrameStream(buf.clone())),
            &["cpu".into(), "mem".into()],
        )
        .unwrap();
        writer
            .window(
                1700000000.5,
                [
                    row("a", &[Some(0.25), None]),
                    row("b", &[Some(1.0), Some(2e6)]),
                ],
            )
            .unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "ts,node,domain,entity,cpu,mem\n\
             1700000000.500,n1,shop/Deployment/web/app,a,0.25,\n\
             1700000000.500,n1,shop/Deployment/web/app,b,1,2000000\n"
        );
    }

    /// Each file the rotation leaves is a frame file `replay` reads on its own, none is
    /// larger than the limit, and no more old files are kept than asked.
    #[test]
    fn record_files_rotate_at_the_size_into_files_replay_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.csv");
        let rotation = Rotation {
            max_bytes: 300,
            keep: 2,
        };
        let features = ["cpu".to_owned(), "mem".to_owned()];
        let mut writer = FrameWriter::new(
            Box::new(RecordFiles::create(&path, rotation).unwrap()),
            &features,
        )
        .unwrap();
        for window in 0..20 {
            writer
                .window(
                    f64::from(window),
                    [
                        row("a", &[Some(0.25), None]),
                        row("b", &[Some(1.0), Some(2.0)]),
                    ],
                )
                .unwrap();
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["frames.csv", "frames.csv.1", "frames.csv.2"]);
        let mut last_ts = Vec::new();
        for name in ["frames.csv.2", "frames.csv.1", "frames.csv"] {
            let file = dir.path().join(name);
            let text = fs::read_to_string(&file).unwrap();
            assert!(text.len() <= 300, "{name} is {} bytes", text.len());
            assert!(
                text.starts_with("ts,node,domain,entity,cpu,mem\n"),
                "{name}"
            );
            let frames =
                crate::replay::FrameReader::new(name.to_owned(), File::open(&file).unwrap())
                    .unwrap();
            let read = crate::replay::replay(
                crate::detect::DetectConfig::default(),
                None,
                frames,
                io::sink(),
                "-",
            )
            .unwrap();
            assert_eq!(read.rows, 2 * read.windows, "{name}: whole windows");
            let windows = read.windows;
            assert!(windows > 0, "{name} has rows");
            last_ts.push(
                text.lines()
                    .last()
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        }
        assert_eq!(
            last_ts.last().unwrap(),
            "19.000",
            "the newest rows are in frames.csv"
        );
        assert!(
            last_ts
                .windows(2)
                .all(|w| w[0].parse::<f64>().unwrap() < w[1].parse().unwrap()),
            "older files hold older windows: {last_ts:?}"
        );
    }

    #[test]
    fn record_files_are_root_only_even_where_a_file_was_left_open_to_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frames.csv");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let rotation = Rotation {
            max_bytes: 1,
            keep: 1,
        };
        let mut writer = FrameWriter::new(
            Box::new(RecordFiles::create(&path, rotation).unwrap()),
            &["cpu".into()],
        )
        .unwrap();
        for ts in [1.0, 2.0] {
            writer.window(ts, [row("a", &[Some(1.0)])]).unwrap();
        }
        for name in ["frames.csv", "frames.csv.1"] {
            let mode = fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("64MB").is_err());
        assert!(parse_size("MiB").is_err());
    }
}
