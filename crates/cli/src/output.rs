//! Output: JSON documents, aligned tables, `key: value` lines and progress indicators (drawn on
//! a terminal only, so piped output has no bars and no escape codes).

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Transfers at least this large get a progress bar (on a terminal).
pub const PROGRESS_THRESHOLD: u64 = 1024 * 1024;

/// Prints one JSON document on stdout.
pub fn json(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
}

/// A field of `value` as table text: strings as they are, `null` as empty, others as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints `rows` under `header` in columns aligned on the widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}

/// Prints the items of a list as a table of `columns`: (header, field of each item).
pub fn items(items: &[Value], columns: &[(&str, &str)]) {
    let header: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> =
        items.iter().map(|item| columns.iter().map(|(_, f)| text(&item[*f])).collect()).collect();
    table(&header, &rows);
}

/// Prints the top-level fields of an object as `key: value` lines, leaving out `null`s.
pub fn fields(value: &Value) {
    let mut out = std::io::stdout().lock();
    if let Value::Object(o) = value {
        for (k, v) in o.iter().filter(|(_, v)| !v.is_null()) {
            let _ = writeln!(out, "{k}: {}", text(v));
        }
    }
}

/// `1536` as `1.5 KiB`.
pub fn size(n: u64) -> String {
    let mut v = n as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if v < 1024.0 || unit == "GiB" {
            return if unit == "B" { format!("{n} B") } else { format!("{v:.1} {unit}") };
        }
        v /= 1024.0;
    }
    unreachable!()
}

/// Whether standard error is a terminal (where progress is drawn).
pub fn interactive() -> bool {
    std::io::stderr().is_terminal()
}

/// A progress bar for a transfer of `total` bytes, drawn on a terminal for large transfers.
pub fn transfer(label: &str, total: u64) -> ProgressBar {
    if !interactive() || total < PROGRESS_THRESHOLD {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total).with_message(label.to_owned()).with_style(
        ProgressStyle::with_template(
            "{wide_msg} [{bar:25}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
        )
        .expect("valid template")
        .progress_chars("#>-"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A spinner saying `label` while something runs, drawn on a terminal only.
pub fn spinner(label: &str) -> ProgressBar {
    if !interactive() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner().with_message(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(12), "12 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
    }

    #[test]
    fn table_text_of_values() {
        assert_eq!(text(&Value::Null), "");
        assert_eq!(text(&serde_json::json!("a")), "a");
        assert_eq!(text(&serde_json::json!(3)), "3");
    }
}
