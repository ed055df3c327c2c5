//! Findings and the words that explain them.

use std::fmt;
use std::time::SystemTime;

/// Who an observation is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Container id.
    pub entity: String,
    /// Pod name; `None` outside Kubernetes or in recorded frames.
    pub pod: Option<String>,
    /// Pod namespace; `None` outside Kubernetes or in recorded frames.
    pub namespace: Option<String>,
    /// The set of containers that must behave alike.
    pub domain: String,
    pub node: String,
}

/// How sure a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        })
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// One entity that strays from its peers or from its own past.
    #[default]
    Member,
    /// A third or more of a domain that moved away from its own past together: not a stray,
    /// an incident of the domain. Its subject's entity is empty.
    DomainShift {
        /// Members that moved, and members there were.
        moved: usize,
        members: usize,
    },
}

impl Kind {
    /// The kind in one word, as logs and metrics name it: `member` or `domain_shift`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::DomainShift { .. } => "domain_shift",
        }
    }
}

/// What a value was compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The median of the domain's members on the node.
    Peers,
    /// The entity's own past (a domain with too few members): the median of its recent
    /// values or, once it has a seasonal past, its expected value for this time of day.
    OwnHistory,
}

/// One feature of one entity in one window, against what it was compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub value: f64,
    /// Peer median, or its own recent median or expected value for this time of day, per
    /// `basis`.
    pub reference: f64,
    /// The spread `z` is measured in: the MAD, raised to the feature's floors.
    pub scale: f64,
    /// The feature's score in that window (signed: below the reference is negative).
    pub z: f64,
    pub basis: Basis,
}

/// One feature that drove a finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Driver {
    pub feature: String,
    pub value: f64,
    /// Peer median, or its own recent median or expected value for this time of day, per
    /// `basis`.
    pub reference: f64,
    /// The spread `z` is measured in.
    pub scale: f64,
    /// The feature's score in that window (signed: below the reference is negative).
    pub z: f64,
    pub basis: Basis,
}

impl Driver {
    pub fn new(feature: &str, c: Comparison) -> Self {
        Self {
            feature: feature.to_owned(),
            value: c.value,
            reference: c.reference,
            scale: c.scale,
            z: c.z,
            basis: c.basis,
        }
    }
}

impl fmt::Display for Driver {
    /// "memory working set 4.1× peer median (410 vs 100, z 12.3)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = self.feature.replace('_', " ");
        let against = match self.basis {
            Basis::Peers => "peer median",
            Basis::OwnHistory => "its own past",
        };
        let (value, reference, z) = (short(self.value, 3), short(self.reference, 3), self.z);
        if self.reference != 0.0 && self.value / self.reference > 0.0 {
            let ratio = short(self.value / self.reference, 2);
            write!(
                f,
                "{label} {ratio}× {against} ({value} vs {reference}, z {z:.1})"
            )
        } else {
            write!(
                f,
                "{label} {value} against {against} {reference} (z {z:.1})"
            )
        }
    }
}

/// An entity that strays from its peers or from its own past, or a domain that moved.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    /// Stable for the finding's life: derived from the node, the entity and when it opened.
    pub id: String,
    pub subject: Subject,
    pub severity: Severity,
    pub opened: SystemTime,
    /// The last window that was anomalous.
    pub updated: SystemTime,
    pub closed: Option<SystemTime>,
    /// Highest score seen while open.
    pub peak_score: f64,
    /// The strongest features of the last anomalous window, strongest first.
    pub drivers: Vec<Driver>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.subject;
        if let Kind::DomainShift { moved, members } = self.kind {
            write!(
                f,
                "{} {} on {}: {moved} of {members} members moved together: ",
                self.severity, s.domain, s.node
            )?;
            for (i, driver) in self.drivers.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{driver}")?;
            }
            return Ok(());
        }
        write!(f, "{} {}", self.severity, s.entity)?;
        if let (Some(pod), Some(namespace)) = (&s.pod, &s.namespace) {
            write!(f, " (pod {namespace}/{pod})")?;
        }
        write!(f, " in {} on {}: ", s.domain, s.node)?;
        for (i, driver) in self.drivers.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{driver}")?;
        }
        Ok(())
    }
}

/// A finding's id: 16 hex digits of FNV-1a over node, entity and opening time, so that the
/// same finding gets the same id wherever it is computed.
pub fn finding_id(subject: &Subject, opened: SystemTime) -> String {
    let nanos = opened
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let parts = [
        subject.node.as_bytes(),
        b"\0",
        subject.entity.as_bytes(),
        b"\0",
        &nanos.to_le_bytes(),
    ];
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// `x` to about `digits` significant digits, without a trail of noise; large values get a
/// k, M or G suffix ("413M", not "413036064").
fn short(x: f64, digits: i32) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    for (from, scale, suffix) in [(1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")] {
        if x.abs() >= from {
            return format!("{}{suffix}", short(x / scale, digits));
        }
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).clamp(0, 6) as usize;
    format!("{x:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn driver(value: f64, reference: f64, basis: Basis) -> Driver {
        Driver {
            feature: "memory_working_set".into(),
            value,
            reference,
            scale: 1.0,
            z: 12.34,
            basis,
        }
    }

    #[test]
    fn drivers_read_as_a_ratio_to_the_reference() {
        assert_eq!(
            driver(410.0, 100.0, Basis::Peers).to_string(),
            "memory working set 4.1× peer median (410 vs 100, z 12.3)"
        );
        assert_eq!(
            driver(0.5, 2.0, Basis::OwnHistory).to_string(),
            "memory working set 0.25× its own past (0.500 vs 2.00, z 12.3)"
        );
    }

    #[test]
    fn large_values_are_shortened() {
        assert_eq!(
            driver(413_036_064.0, 100_518_678.0, Basis::Peers).to_string(),
            "memory working set 4.1× peer median (413M vs 101M, z 12.3)"
        );
        assert_eq!(short(12_345.0, 3), "12.3k");
        assert_eq!(short(1_234.0, 3), "1234");
        assert_eq!(short(-2.5e9, 3), "-2.50G");
    }

    #[test]
    fn ids_are_stable_and_differ_per_finding() {
        let subject = Subject {
            entity: "c1".into(),
            pod: None,
            namespace: None,
            domain: "d".into(),
            node: "n".into(),
        };
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let id = finding_id(&subject, t);
        assert_eq!(id.len(), 16);
        assert_eq!(id, finding_id(&subject.clone(), t));
        assert_ne!(
            id,
            finding_id(&subject, t + std::time::Duration::from_secs(10))
        );
        let other = Subject {
            entity: "c2".into(),
            ..subject
        };
        assert_ne!(id, finding_id(&other, t));
    }

    #[test]
    fn a_zero_reference_is_not_a_ratio() {
        assert_eq!(
            driver(3.0, 0.0, Basis::Peers).to_string(),
            "memory working set 3.00 against peer median 0 (z 12.3)"
        );
    }
}
