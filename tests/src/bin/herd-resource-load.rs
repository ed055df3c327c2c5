//! Load on one resource (disk, network, CPU, memory) with a known effect on one eBPF signal, for the signal tests.
//!
//! Every mode first joins the cgroups named by `--join` (each a cgroup directory, v1 or v2),
//! so that everything it then does (sockets, IO, allocations) belongs to them, and prints
//! `ready` once it has. Then:
//! - `direct-io`: `--count` O_DIRECT reads or writes of `--block-size` bytes at consecutive
//!   offsets of `--path`, one at a time;
//! - `listen`: accepts one connection on 127.0.0.1, prints the port first, reads until EOF
//!   and prints how many bytes came;
//! - `send`: sends `--bytes` bytes to 127.0.0.1:`--port`;
//! - `spin`: pinned to `--cpu`, burns CPU for `--seconds`;
//! - `tick`: pinned to `--cpu`, wakes every `--period-ms` for `--seconds`;
//! - `hog`: allocates and touches memory until killed (or `--mb` MiB are touched).

use std::{
    alloc::{Layout, alloc_zeroed, dealloc},
    fs::{self, OpenOptions},
    hint::black_box,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpListener, TcpStream},
    os::unix::fs::{FileExt as _, OpenOptionsExt as _},
    path::PathBuf,
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    /// A cgroup directory to join before anything else (repeatable).
    #[arg(long)]
    join: Vec<PathBuf>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    DirectIo {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        block_size: usize,
        #[arg(long)]
        count: u64,
        /// Read instead of write.
        #[arg(long)]
        read: bool,
    },
    Listen,
    Send {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        bytes: u64,
    },
    Spin {
        #[arg(long)]
        cpu: usize,
        #[arg(long)]
        seconds: f64,
    },
    Tick {
        #[arg(long)]
        cpu: usize,
        #[arg(long)]
        seconds: f64,
        #[arg(long, default_value_t = 10)]
        period_ms: u64,
    },
    Hog {
        #[arg(long, default_value_t = u64::MAX)]
        mb: u64,
    },
}

const PAGE: usize = 4096;
const CHUNK: usize = 64 * 1024;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    for cgroup in &cli.join {
        // Writing 0 moves the writing process itself.
        fs::write(cgroup.join("cgroup.procs"), "0")
            .with_context(|| format!("joining {}", cgroup.display()))?;
    }
    let mut out = std::io::stdout().lock();
    match cli.mode {
        Mode::DirectIo {
            path,
            block_size,
            count,
            read,
        } => {
            writeln!(out, "ready")?;
            direct_io(&path, block_size, count, read)?;
        }
        Mode::Listen => {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
            writeln!(out, "ready")?;
            writeln!(out, "{}", listener.local_addr()?.port())?;
            out.flush()?;
            let (mut stream, _) = listener.accept()?;
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            loop {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            writeln!(out, "{total}")?;
        }
        Mode::Send { port, bytes } => {
            writeln!(out, "ready")?;
            let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
            let buf = vec![0x5a_u8; CHUNK];
            let mut left = bytes;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                stream.write_all(&buf[..n])?;
                left -= n as u64;
            }
            stream.shutdown(std::net::Shutdown::Write)?;
            // Wait for the peer to close, so that all data is received before this exits.
            let _ = stream.read(&mut [0u8; 1])?;
        }
        Mode::Spin { cpu, seconds } => {
            pin(cpu)?;
            writeln!(out, "ready")?;
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            let mut n = 0u64;
            while Instant::now() < until {
                for _ in 0..10_000 {
                    n = black_box(n.wrapping_add(1));
                }
            }
        }
        Mode::Tick {
            cpu,
            seconds,
            period_ms,
        } => {
            pin(cpu)?;
            writeln!(out, "ready")?;
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < until {
                thread::sleep(Duration::from_millis(period_ms));
            }
        }
        Mode::Hog { mb } => {
            writeln!(out, "ready")?;
            out.flush()?;
            let mut kept = Vec::new();
            for _ in 0..mb {
                let mut chunk = vec![0u8; 1 << 20];
                for byte in chunk.iter_mut().step_by(PAGE) {
                    *byte = 1;
                }
                kept.push(black_box(chunk));
            }
        }
    }
    Ok(())
}

fn direct_io(path: &PathBuf, block_size: usize, count: u64, read: bool) -> anyhow::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(!read)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .with_context(|| format!("opening {} with O_DIRECT", path.display()))?;
    let layout = Layout::from_size_align(block_size, PAGE)?;
    // SAFETY: the layout has a non-zero size (checked by the caller's sizes) and is freed
    // below with the same layout.
    let ptr = unsafe { alloc_zeroed(layout) };
    anyhow::ensure!(!ptr.is_null(), "cannot allocate an aligned buffer");
    // SAFETY: `ptr` points to `block_size` initialised bytes owned here.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, block_size) };
    let mut result = Ok(());
    for i in 0..count {
        let offset = i * block_size as u64;
        let done = if read {
            file.read_exact_at(buf, offset)
        } else {
            file.write_all_at(buf, offset)
        };
        if let Err(err) = done {
            result = Err(err).context("direct IO");
            break;
        }
    }
    // SAFETY: allocated above with this layout.
    unsafe { dealloc(ptr, layout) };
    result
}

fn pin(cpu: usize) -> anyhow::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is checked against the set's size by the macro's implementation.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the set is valid for its size; pid 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    anyhow::ensure!(
        rc == 0,
        "sched_setaffinity to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}
