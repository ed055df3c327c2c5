//! Recorded feature frames as `herd-agent replay` reads them, window by window: bad
//! headers, ragged rows, times and values that are not numbers, unsorted windows.
#![no_main]

use herd_agent::replay::FrameReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut frames = match FrameReader::new("fuzz.csv".into(), data) {
        Ok(frames) => frames,
        Err(err) => {
            let _ = err.to_string();
            return;
        }
    };
    loop {
        match frames.next_window() {
            Ok(Some(_window)) => {}
            Ok(None) => break,
            Err(err) => {
                let _ = err.to_string();
                break;
            }
        }
    }
});
