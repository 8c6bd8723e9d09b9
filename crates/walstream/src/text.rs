//! Text output shared by the commands and the restore plans: aligned tables and file times.

/// Formats rows like Go's `tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)`: every cell but the last of a
/// row is padded to its column's width plus two spaces.
pub fn tabwrite(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths.get(i).copied().unwrap_or(0) + 2 - cell.chars().count();
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// RFC 3339 time at second precision in UTC, as Litestream prints file times.
pub fn fmt_time(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}
