//! Human output: aligned tables and short status lines.
//!
//! Everything a script might parse goes to stdout (`--json` gives it as
//! JSON); progress and errors go to stderr, so `mcpctl … | jq` stays clean.

use std::io::Write;

/// An aligned, space-separated table with an upper-case header row.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&'static str]) -> Self {
        Self {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Add one row (missing cells are blank, extra cells are dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Write the table; columns are as wide as their widest cell, two spaces apart.
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, width) in widths.iter().enumerate() {
                let cell = row.get(i).map(String::as_str).unwrap_or("");
                if i + 1 == widths.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = width - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A JSON value on one line, shortened to `max` characters for a table cell.
pub fn compact(value: &serde_json::Value, max: usize) -> String {
    let text = value.to_string();
    if text.chars().count() <= max {
        return text;
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// A progress line on stderr, for anything that waits.
pub fn progress(message: &str) {
    eprintln!("… {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut table = Table::new(&["NAME", "INSTANCES"]);
        table.row(vec!["echo".into(), "2".into()]);
        table.row(vec!["billing-api".into(), "10".into()]);
        let mut out = Vec::new();
        table.write(&mut out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "NAME         INSTANCES\necho         2\nbilling-api  10\n"
        );
    }

    #[test]
    fn long_values_are_shortened() {
        let value = serde_json::json!({"a": "0123456789"});
        assert_eq!(compact(&value, 8), "{\"a\":\"0…");
    }
}
