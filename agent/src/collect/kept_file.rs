//! Counter files opened once and re-read with `pread` at offset 0: a few µs a read, where
//! opening the file again each tick costs tens (the kernel regenerates the text on every
//! read from offset 0).

use std::{
    fs::File,
    io,
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
};

#[derive(Debug)]
pub struct KeptFile {
    file: File,
    path: PathBuf,
}

impl KeptFile {
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_owned();
        Ok(Self {
            file: File::open(&path)?,
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole current content, read into `buf` (reused across reads).
    ///
    /// One `pread` per read: kernfs and seq_file fill the buffer as far as the text goes,
    /// so a short read is the end, and only a full buffer needs another, larger read.
    pub fn read<'b>(&self, buf: &'b mut Vec<u8>) -> io::Result<&'b str> {
        buf.clear();
        buf.reserve(MIN_BUFFER);
        loop {
            let filled = buf.len();
            let room = buf.capacity();
            buf.resize(room, 0);
            let offset = u64::try_from(filled).unwrap_or(u64::MAX);
            let n = match self.file.read_at(&mut buf[filled..], offset) {
                Ok(n) => n,
                Err(err) => {
                    buf.truncate(filled);
                    return Err(err);
                }
            };
            buf.truncate(filled + n);
            if filled + n < room {
                break;
            }
            buf.reserve(room);
        }
        std::str::from_utf8(buf).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }
}

/// Large enough for every cgroup file and most of /proc/<pid>/net in one read.
const MIN_BUFFER: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rereads_see_the_current_content_of_the_same_open_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.current");
        std::fs::write(&path, "4096\n").unwrap();
        let kept = KeptFile::open(&path).unwrap();
        let mut buf = Vec::new();
        assert_eq!(kept.read(&mut buf).unwrap(), "4096\n");

        let long = "x".repeat(100_000);
        std::fs::write(&path, &long).unwrap();
        assert_eq!(
            kept.read(&mut buf).unwrap(),
            long,
            "longer than the first buffer"
        );
    }
}
