//! The container table as `herd-agent containers` prints it.

use std::{fmt::Write as _, time::SystemTime};

use crate::discovery::containers::ContainerTable;

/// The table as aligned text, one container a line after a header, oldest first.
pub fn render(table: &ContainerTable, now: SystemTime) -> String {
    let header = [
        "CONTAINER",
        "POD",
        "NAMESPACE",
        "NAME",
        "DOMAIN",
        "CGROUP-ID",
        "AGE",
        "JUDGED",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    for container in table.containers() {
        let pod = container.pod.as_ref();
        rows.push(vec![
            container.id.chars().take(12).collect(),
            pod.map_or("-", |p| p.name.as_str()).to_owned(),
            pod.map_or("-", |p| p.namespace.as_str()).to_owned(),
            container.name.clone().unwrap_or_else(|| "-".to_owned()),
            container
                .domain
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
            container.cgroup_id.to_string(),
            age(container.age(now).as_secs()),
            if table.judged(container, now) {
                "yes"
            } else {
                "young"
            }
            .to_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|col| rows.iter().map(|row| row[col].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// Ages the way kubectl shows them: 45s, 12m, 3h, 2d.
fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Duration};

    use super::*;
    use crate::discovery::domain::LabelOwners;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(45), "45s");
        assert_eq!(age(60 * 12 + 5), "12m");
        assert_eq!(age(3600 * 3), "3h");
        assert_eq!(age(86400 * 2 + 1), "2d");
    }

    #[test]
    fn cgroup_only_containers_show_dashes_and_youth() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = ContainerTable::new(dir.path(), dir.path(), Duration::from_secs(60));
        let id = "ab".repeat(32);
        let path = format!("/docker/{id}");
        let now = SystemTime::now();
        table.update([(42, Path::new(&path))], None, &LabelOwners, now);

        let text = render(&table, now + Duration::from_secs(5));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("CONTAINER "));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells, [&id[..12], "-", "-", "-", "-", "42", "5s", "young"]);
    }
}
