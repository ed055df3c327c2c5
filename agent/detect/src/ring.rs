//! A fixed-size ring of recent values: the bounded memory behind a self-baseline.

/// Keeps the last `capacity` values pushed; older ones are overwritten.
#[derive(Debug, Clone)]
pub struct Ring {
    values: Vec<f64>,
    next: usize,
    capacity: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Self {
            values: Vec::new(),
            next: 0,
            capacity,
        }
    }

    pub fn push(&mut self, value: f64) {
        if self.values.len() < self.capacity {
            self.values.push(value);
        } else {
            self.values[self.next] = value;
        }
        self.next = (self.next + 1) % self.capacity;
    }

    /// The kept values, in no particular order.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_most_recent_values() {
        let mut ring = Ring::new(3);
        for v in 1..=5 {
            ring.push(f64::from(v));
        }
        let mut kept = ring.values().to_vec();
        kept.sort_by(f64::total_cmp);
        assert_eq!(kept, [3.0, 4.0, 5.0]);
        assert_eq!(ring.len(), 3);
    }
}
