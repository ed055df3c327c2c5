//! Member × feature matrices (ndarray) for a domain across the cluster: each feature's median
//! and MAD over the members that have a value.

use herd_detect::{mad, median};
use ndarray::{Array2, ArrayView1};

/// Median and MAD of each column, over its finite values; `None` for a column without one.
pub fn column_stats(members: &Array2<f64>) -> Vec<Option<(f64, f64, usize)>> {
    members
        .columns()
        .into_iter()
        .map(|column| {
            let values = finite(column);
            let median = median(&values)?;
            Some((median, mad(&values, median)?, values.len()))
        })
        .collect()
}

fn finite(column: ArrayView1<'_, f64>) -> Vec<f64> {
    column.iter().copied().filter(|v| v.is_finite()).collect()
}

/// A matrix from rows of equal length.
pub fn from_rows(rows: &[Vec<f64>], columns: usize) -> Array2<f64> {
    let mut matrix = Array2::from_elem((rows.len(), columns), f64::NAN);
    for (mut row, values) in matrix.rows_mut().into_iter().zip(rows) {
        for (cell, value) in row.iter_mut().zip(values) {
            *cell = *value;
        }
    }
    matrix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_skip_missing_values() {
        let m = from_rows(
            &[
                vec![1.0, f64::NAN],
                vec![2.0, f64::NAN],
                vec![10.0, f64::NAN],
            ],
            2,
        );
        let stats = column_stats(&m);
        assert_eq!(stats[0], Some((2.0, 1.0, 3)));
        assert_eq!(stats[1], None);
    }
}
