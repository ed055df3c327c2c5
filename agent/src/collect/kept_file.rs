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

    /// The whole current content, read into `buf` (scratch space reused across reads).
    ///
    /// One `pread` at offset 0: kernfs and seq_file fill the buffer as far as the text goes,
    /// so a short read is the whole text. A full buffer is read again from offset 0 into one
    /// twice as large, so that the text is one generation of the file, never two spliced.
    /// The buffer is zeroed only when it grows, not before every read (16 KiB cleared to read
    /// a ten-byte file).
    pub fn read<'b>(&self, buf: &'b mut Vec<u8>) -> io::Result<&'b str> {
        if buf.len() < MIN_BUFFER {
            buf.resize(MIN_BUFFER, 0);
        }
        let n = loop {
            let n = self.file.read_at(buf, 0)?;
            if n < buf.len() {
                break n;
            }
            if buf.len() >= MAX_BUFFER {
                // No counter file is this large: something else sits at the path, and the
                // agent's memory is not for it.
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!("{} holds {MAX_BUFFER} bytes or more", self.path.display()),
                ));
            }
            buf.resize((buf.len() * 2).min(MAX_BUFFER), 0);
        };
        std::str::from_utf8(&buf[..n])
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }
}

/// Large enough for every cgroup file and most of /proc/<pid>/net in one read.
const MIN_BUFFER: usize = 16 * 1024;
/// The most a read may take: the largest file read (a `memory.stat`, a `net/netstat`) is a
/// few KiB, so 1 MiB is far above any real one and bounds what a strange file costs.
const MAX_BUFFER: usize = 1024 * 1024;

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
        std::fs::write(&path, "1\n").unwrap();
        assert_eq!(
            kept.read(&mut buf).unwrap(),
            "1\n",
            "shorter than the last read"
        );
    }

    #[test]
    fn a_file_past_the_cap_is_an_error_and_the_buffer_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memory.stat");
        std::fs::write(&path, "x".repeat(MAX_BUFFER)).unwrap();
        let kept = KeptFile::open(&path).unwrap();
        let mut buf = Vec::new();
        let err = kept.read(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert!(err.to_string().contains("memory.stat"), "{err}");
        assert_eq!(buf.len(), MAX_BUFFER, "grown to the cap, no further");

        std::fs::write(&path, "x".repeat(MAX_BUFFER - 1)).unwrap();
        assert_eq!(
            kept.read(&mut buf).unwrap().len(),
            MAX_BUFFER - 1,
            "just below it"
        );
    }
}
