//! Recorded feature frames, the CSV the agent writes with `--record` and `replay` reads:
//! the header `ts,node,domain,entity,<feature…>`, rows sorted by `ts` (seconds), the rows
//! with the same `ts` one window, an empty cell a missing value. One reader for every
//! program that reads frames: the agent's replay and the evaluation.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use thiserror::Error;

use crate::{Observation, Subject};

/// The columns every frame file starts with.
pub const KEY_COLUMNS: [&str; 4] = ["ts", "node", "domain", "entity"];

/// Features that were renamed, (old, new): a recording made before the rename is read with
/// the new name, so that it still replays and evaluates.
pub const RENAMED_FEATURES: &[(&str, &str)] = &[("oom_kills", "oom_kills_per_window")];

fn current_name(name: &str) -> &str {
    RENAMED_FEATURES
        .iter()
        .find(|(old, _)| *old == name)
        .map_or(name, |(_, new)| new)
}

/// Why a frame file cannot be read. `file` names it, `line` its 1-based line.
#[derive(Debug, Error)]
pub enum FrameReadError {
    #[error("{file}, line {line}: {source}")]
    Read {
        file: String,
        line: u64,
        source: csv::Error,
    },
    #[error("{file}: the header must start with `ts,node,domain,entity`, found `{found}`")]
    BadHeader { file: String, found: String },
    #[error("{file}: the header names no feature after `ts,node,domain,entity`")]
    NoFeatures { file: String },
    #[error("{file}: column {column} of the header has no name")]
    UnnamedColumn { file: String, column: usize },
    #[error("{file}: column `{name}` appears twice in the header")]
    DuplicateColumn { file: String, name: String },
    #[error("{file}, line {line}: {got} columns, the header has {expected}")]
    ColumnCount {
        file: String,
        line: u64,
        expected: usize,
        got: usize,
    },
    #[error("{file}, line {line}: column `{column}` is `{value}`, not a number")]
    NotANumber {
        file: String,
        line: u64,
        column: String,
        value: String,
    },
    #[error("{file}, line {line}: ts `{value}` is not a time in seconds from 0")]
    BadTime {
        file: String,
        line: u64,
        value: String,
    },
    #[error("{file}, line {line}: column `{column}` is empty")]
    EmptyCell {
        file: String,
        line: u64,
        column: &'static str,
    },
    #[error("{file}, line {line}: ts {ts} comes after {previous}; rows must be sorted by ts")]
    Unsorted {
        file: String,
        line: u64,
        ts: f64,
        previous: f64,
    },
    #[error("{file}, line {line}: entity `{entity}` appears twice at ts {ts}")]
    DuplicateEntity {
        file: String,
        line: u64,
        entity: String,
        ts: f64,
    },
}

/// One window of frames: the rows that share a ts.
pub struct Window {
    /// Seconds since the Unix epoch.
    pub ts: f64,
    pub at: SystemTime,
    /// Each row's ts cell as written, to echo it unchanged.
    pub ts_cells: Vec<String>,
    pub observations: Vec<Observation>,
}

/// A frame file being read window by window.
pub struct FrameReader<R> {
    pub file: String,
    pub features: Vec<String>,
    records: csv::StringRecordsIntoIter<R>,
    /// The first row of the next window, already read.
    pending: Option<Row>,
}

struct Row {
    line: u64,
    ts: f64,
    at: SystemTime,
    ts_cell: String,
    observation: Observation,
}

impl<R: Read> FrameReader<R> {
    /// Reads and checks the header; `file` names the source in errors.
    pub fn new(file: String, reader: R) -> Result<Self, FrameReadError> {
        let mut records = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(reader)
            .into_records();
        let header = match records.next() {
            Some(record) => record.map_err(|source| FrameReadError::Read {
                file: file.clone(),
                line: 1,
                source,
            })?,
            None => csv::StringRecord::new(),
        };
        let names: Vec<String> = header.iter().map(|c| c.trim().to_string()).collect();
        if names.len() < KEY_COLUMNS.len() || names[..KEY_COLUMNS.len()] != KEY_COLUMNS {
            return Err(FrameReadError::BadHeader {
                file,
                found: names.join(","),
            });
        }
        let features: Vec<String> = names[KEY_COLUMNS.len()..]
            .iter()
            .map(|name| current_name(name).to_string())
            .collect();
        if features.is_empty() {
            return Err(FrameReadError::NoFeatures { file });
        }
        let mut seen = HashSet::new();
        for (i, name) in features.iter().enumerate() {
            if name.is_empty() {
                return Err(FrameReadError::UnnamedColumn {
                    file,
                    column: KEY_COLUMNS.len() + i + 1,
                });
            }
            if !seen.insert(name) {
                return Err(FrameReadError::DuplicateColumn {
                    file,
                    name: name.clone(),
                });
            }
        }
        Ok(Self {
            file,
            features,
            records,
            pending: None,
        })
    }

    /// The next window, or `None` at the end of the file.
    pub fn next_window(&mut self) -> Result<Option<Window>, FrameReadError> {
        let Some(first) = self
            .pending
            .take()
            .map_or_else(|| self.next_row(), |r| Ok(Some(r)))?
        else {
            return Ok(None);
        };
        let ts = first.ts;
        let mut window = Window {
            ts,
            at: first.at,
            ts_cells: Vec::new(),
            observations: Vec::new(),
        };
        let mut entities = HashSet::new();
        let mut row = Some(first);
        while let Some(current) = row {
            if current.ts != ts {
                if current.ts < ts {
                    return Err(FrameReadError::Unsorted {
                        file: self.file.clone(),
                        line: current.line,
                        ts: current.ts,
                        previous: ts,
                    });
                }
                self.pending = Some(current);
                break;
            }
            if !entities.insert(current.observation.subject.entity.clone()) {
                return Err(FrameReadError::DuplicateEntity {
                    file: self.file.clone(),
                    line: current.line,
                    entity: current.observation.subject.entity,
                    ts,
                });
            }
            window.ts_cells.push(current.ts_cell);
            window.observations.push(current.observation);
            row = self.next_row()?;
        }
        Ok(Some(window))
    }

    fn next_row(&mut self) -> Result<Option<Row>, FrameReadError> {
        let Some(record) = self.records.next() else {
            return Ok(None);
        };
        let record = record.map_err(|source| FrameReadError::Read {
            file: self.file.clone(),
            line: source.position().map_or(0, |p| p.line()),
            source,
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let expected = KEY_COLUMNS.len() + self.features.len();
        if record.len() != expected {
            return Err(FrameReadError::ColumnCount {
                file: self.file.clone(),
                line,
                expected,
                got: record.len(),
            });
        }
        let cell = |i: usize| record.get(i).unwrap_or_default().trim();
        let ts_cell = cell(0);
        let parsed = ts_cell.parse::<f64>().ok();
        let at = parsed
            .and_then(|ts| Duration::try_from_secs_f64(ts).ok())
            .and_then(|since| SystemTime::UNIX_EPOCH.checked_add(since));
        let (Some(ts), Some(at)) = (parsed, at) else {
            return Err(FrameReadError::BadTime {
                file: self.file.clone(),
                line,
                value: ts_cell.to_string(),
            });
        };
        let mut key = [""; 3];
        for (i, column) in KEY_COLUMNS[1..].iter().enumerate() {
            key[i] = cell(i + 1);
            if key[i].is_empty() {
                return Err(FrameReadError::EmptyCell {
                    file: self.file.clone(),
                    line,
                    column,
                });
            }
        }
        let [node, domain, entity] = key;
        let values = self
            .features
            .iter()
            .enumerate()
            .map(|(i, feature)| {
                let text = cell(KEY_COLUMNS.len() + i);
                if text.is_empty() {
                    return Ok(None);
                }
                text.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .map(Some)
                    .ok_or_else(|| FrameReadError::NotANumber {
                        file: self.file.clone(),
                        line,
                        column: feature.clone(),
                        value: text.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Row {
            line,
            ts,
            at,
            ts_cell: ts_cell.to_string(),
            observation: Observation {
                subject: Subject {
                    entity: entity.to_string(),
                    pod: None,
                    namespace: None,
                    domain: domain.to_string(),
                    node: node.to_string(),
                },
                values,
            },
        }))
    }
}

/// Why frames cannot be written.
#[derive(Debug, Error)]
#[error("writing feature frames: {0}")]
pub struct FrameWriteError(#[from] csv::Error);

/// Frames written back in the format [`FrameReader`] reads (the header, then a row per
/// observation, an empty cell for a missing value): for programs that copy frames apart,
/// such as the evaluation's split of a recording into training and input.
pub struct FrameCsvWriter<W: Write> {
    csv: csv::Writer<W>,
}

impl<W: Write> FrameCsvWriter<W> {
    /// Starts the output with the header for `features`.
    pub fn new(out: W, features: &[String]) -> Result<Self, FrameWriteError> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(
            KEY_COLUMNS
                .into_iter()
                .chain(features.iter().map(String::as_str)),
        )?;
        Ok(Self { csv })
    }

    /// Writes one row; `ts_cell` is the time as the source wrote it.
    pub fn row(&mut self, ts_cell: &str, observation: &Observation) -> Result<(), FrameWriteError> {
        let subject = &observation.subject;
        let keys = [
            ts_cell,
            subject.node.as_str(),
            subject.domain.as_str(),
            subject.entity.as_str(),
        ]
        .map(str::to_owned);
        let values = observation
            .values
            .iter()
            .map(|value| value.map(|v| v.to_string()).unwrap_or_default());
        self.csv.write_record(keys.into_iter().chain(values))?;
        Ok(())
    }

    /// Flushes what is buffered and returns the output.
    pub fn finish(self) -> Result<W, FrameWriteError> {
        self.csv
            .into_inner()
            .map_err(|err| FrameWriteError(err.into_error().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_made_before_a_rename_is_read_with_the_new_name() {
        let csv = "ts,node,domain,entity,cpu_usage_cores,oom_kills\n10,n,d,e0,0.5,2\n";
        let mut frames = FrameReader::new("old.csv".into(), csv.as_bytes()).unwrap();
        assert_eq!(frames.features, ["cpu_usage_cores", "oom_kills_per_window"]);
        let window = frames.next_window().unwrap().unwrap();
        assert_eq!(window.observations[0].values, [Some(0.5), Some(2.0)]);
    }

    #[test]
    fn written_frames_read_back_the_same() {
        let csv = "ts,node,domain,entity,cpu,memory\n10.5,n,\"ns,web\",e0,0.25,\n10.5,n,d,e1,1,2\n";
        let mut reader = FrameReader::new("in.csv".into(), csv.as_bytes()).unwrap();
        let window = reader.next_window().unwrap().unwrap();
        let mut writer = FrameCsvWriter::new(Vec::new(), &reader.features).unwrap();
        for (ts, observation) in window.ts_cells.iter().zip(&window.observations) {
            writer.row(ts, observation).unwrap();
        }
        assert_eq!(String::from_utf8(writer.finish().unwrap()).unwrap(), csv);
    }

    #[test]
    fn an_old_and_a_new_name_for_one_feature_are_a_duplicate_column() {
        let csv = "ts,node,domain,entity,oom_kills,oom_kills_per_window\n";
        let err = FrameReader::new("both.csv".into(), csv.as_bytes())
            .err()
            .unwrap();
        assert!(
            matches!(&err, FrameReadError::DuplicateColumn { name, .. } if name == "oom_kills_per_window"),
            "{err}"
        );
    }
}
