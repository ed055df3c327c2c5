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
    pub fn read<'b>(&self, buf: &'b mut Vec<u8>) -> io::Result<&'b str> {
        buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            let offset = u64::try_from(buf.len()).unwrap_or(u64::MAX);
            let n = self.file.read_at(&mut chunk, offset)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        std::str::from_utf8(buf).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
    }
}

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

        let long = "x".repeat(10_000);
        std::fs::write(&path, &long).unwrap();
        assert_eq!(kept.read(&mut buf).unwrap(), long, "longer than one chunk");
    }
}
