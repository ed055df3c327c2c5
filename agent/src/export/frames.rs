//! Live feature frames written as CSV (`ts,node,domain,entity,<feature…>`), the format
//! `herd-agent replay` reads, so that a live run can be scored again offline.

use std::io::{self, Write};

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

pub struct FrameWriter<W: Write> {
    out: csv::Writer<W>,
}

impl<W: Write> FrameWriter<W> {
    /// Starts a frame file with its header.
    pub fn new(out: W, features: &[String]) -> Result<Self, FrameError> {
        let mut out = csv::Writer::from_writer(out);
        let header = ["ts", "node", "domain", "entity"]
            .into_iter()
            .chain(features.iter().map(String::as_str));
        out.write_record(header)?;
        out.flush()?;
        Ok(Self { out })
    }

    /// Writes one window: every row gets the same `ts` (seconds since the epoch).
    pub fn window<'a>(
        &mut self,
        ts: f64,
        rows: impl IntoIterator<Item = FrameRow<'a>>,
    ) -> Result<(), FrameError> {
        let ts = format!("{ts:.3}");
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
            self.out.write_record(record)?;
        }
        // A window at a time reaches the disk, so a killed agent loses at most one.
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_then_one_row_per_entity_with_empty_missing_cells() {
        let mut buf = Vec::new();
        {
            let mut writer = FrameWriter::new(&mut buf, &["cpu".into(), "mem".into()]).unwrap();
            writer
                .window(
                    1700000000.5,
                    [
                        FrameRow {
                            node: "n1",
                            domain: "shop/Deployment/web/app",
                            entity: "a",
                            values: &[Some(0.25), None],
                        },
                        FrameRow {
                            node: "n1",
                            domain: "shop/Deployment/web/app",
                            entity: "b",
                            values: &[Some(1.0), Some(2e6)],
                        },
                    ],
                )
                .unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(
            text,
            "ts,node,domain,entity,cpu,mem\n\
             1700000000.500,n1,shop/Deployment/web/app,a,0.25,\n\
             1700000000.500,n1,shop/Deployment/web/app,b,1,2000000\n"
        );
    }
}
