//! Renders command results for people (aligned tables) and for programs
//! (CSV, JSON), always to a buffered stdout.
//!
//! Write errors are returned, never unwrapped: a closed pipe must reach
//! `main` as `BrokenPipe`, which exits quietly.

use std::borrow::Cow;
use std::io::{self, BufWriter, StdoutLock, Write};

use clap::ValueEnum;

/// How a command prints tabular results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for reading.
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line (JSON lines).
    Jsonl,
}

/// Buffered stdout: commands print many short lines.
pub fn stdout() -> BufWriter<StdoutLock<'static>> {
    BufWriter::with_capacity(64 * 1024, io::stdout().lock())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// An aligned text table. A row may carry detail lines, printed as they are
/// under it (disassembly, notes), which do not take part in the alignment.
pub struct TextTable {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<(Vec<String>, Vec<String>)>,
}

impl TextTable {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        TextTable {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, cells: Vec<String>) {
        self.push_with_details(cells, Vec::new());
    }

    pub fn push_with_details(&mut self, cells: Vec<String>, details: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push((cells, details));
    }

    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| h.len()).collect();
        for (cells, _) in &self.rows {
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header: Vec<&str> = self.columns.iter().map(|(h, _)| *h).collect();
        self.write_line(w, &header, &widths)?;
        for (cells, details) in &self.rows {
            let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
            self.write_line(w, &cells, &widths)?;
            for line in details {
                writeln!(w, "{line}")?;
            }
        }
        Ok(())
    }

    fn write_line(&self, w: &mut impl Write, cells: &[&str], widths: &[usize]) -> io::Result<()> {
        let mut line = String::new();
        for (i, ((cell, width), (_, align))) in
            cells.iter().zip(widths).zip(&self.columns).enumerate()
        {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width.saturating_sub(cell.chars().count());
            match align {
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
            }
        }
        writeln!(w, "{}", line.trim_end())
    }
}

/// One CSV line, fields quoted where RFC 4180 requires it.
pub fn write_csv_record<S: AsRef<str>>(w: &mut impl Write, fields: &[S]) -> io::Result<()> {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            w.write_all(b",")?;
        }
        w.write_all(csv_field(field.as_ref()).as_bytes())?;
    }
    w.write_all(b"\n")
}

fn csv_field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// A JSON value, pretty-printed, with a final newline.
pub fn write_json(w: &mut impl Write, value: &serde_json::Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *w, value)?;
    w.write_all(b"\n")
}

/// A JSON array as JSON lines: one element per line.
pub fn write_json_lines(w: &mut impl Write, value: &serde_json::Value) -> io::Result<()> {
    let items = match value {
        serde_json::Value::Array(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    for item in items {
        serde_json::to_writer(&mut *w, item)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Quotes a command line for display so that it can be pasted into a shell.
pub fn shell_join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| shell_quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> Cow<'_, str> {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("'{}'", word.replace('\'', r"'\''")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns_and_keeps_details_as_they_are() {
        let mut t = TextTable::new(&[("name", Align::Left), ("n", Align::Right)]);
        t.push(vec!["a".into(), "1000".into()]);
        t.push_with_details(
            vec!["long name".into(), "2".into()],
            vec!["  detail".into()],
        );
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "name          n\na          1000\nlong name     2\n  detail\n"
        );
    }

    #[test]
    fn quotes_csv_fields_only_when_needed() {
        let mut out = Vec::new();
        write_csv_record(&mut out, &["plain", "a,b", "say \"hi\"", ""]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\n"
        );
    }

    #[test]
    fn shell_quotes_what_a_shell_would_split() {
        assert_eq!(
            shell_join(&["ls", "-l", "a b", "it's", ""]),
            r"ls -l 'a b' 'it'\''s' ''"
        );
    }
}
