//! Streams a command's result rows in the format the user chose: aligned
//! columns, CSV, a JSON array or JSON lines.
//!
//! Commands that list rows (syscalls, memory accesses, exports) may print
//! millions of them, so nothing here holds more than a screenful: CSV and
//! JSON go out row by row, and aligned columns take their widths from the
//! first [`WIDTH_SAMPLE`] rows (a longer cell later pushes its line out of
//! alignment rather than holding every row back).
//!
//! A cell is a `serde_json::Value`: JSON gets it as it is (numbers stay
//! numbers), CSV and the table its text, with `null` as an empty field (`-`
//! in a table).

use std::io::{self, Write};

use serde_json::{Map, Value};

use crate::output::{self, Align, Format};

/// Rows of a table printed before its column widths are fixed.
const WIDTH_SAMPLE: usize = 1000;

/// A column of a [`Rows`] output: its name (the CSV header, the JSON key)
/// and how a table aligns it.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub align: Align,
}

/// A left-aligned column (text).
pub const fn text(name: &'static str) -> Column {
    Column {
        name,
        align: Align::Left,
    }
}

/// A right-aligned column (numbers).
pub const fn num(name: &'static str) -> Column {
    Column {
        name,
        align: Align::Right,
    }
}

/// A streaming writer of rows.
pub struct Rows<W: Write> {
    out: W,
    format: Format,
    columns: Vec<Column>,
    /// Table only: rows held until the widths are known.
    pending: Vec<Vec<String>>,
    widths: Option<Vec<usize>>,
    rows: u64,
    /// Table only: the header in bold.
    colour: bool,
}

impl Rows<std::io::BufWriter<std::io::StdoutLock<'static>>> {
    /// Rows on stdout, buffered, with colour where stdout takes it.
    pub fn stdout(format: Format, columns: &[Column]) -> io::Result<Self> {
        Ok(Rows::new(output::stdout(), format, columns)?.with_colour(crate::progress::colour()))
    }
}

impl<W: Write> Rows<W> {
    /// Starts the output; CSV writes its header at once.
    pub fn new(out: W, format: Format, columns: &[Column]) -> io::Result<Rows<W>> {
        let mut rows = Rows {
            out,
            format,
            columns: columns.to_vec(),
            pending: Vec::new(),
            widths: None,
            rows: 0,
            colour: false,
        };
        if format == Format::Csv {
            let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
            output::write_csv_record(&mut rows.out, &names)?;
        }
        Ok(rows)
    }

    /// Bold headers in a table when `on` (the caller knows whether its
    /// writer is a terminal's).
    pub fn with_colour(mut self, on: bool) -> Self {
        self.colour = on && self.format == Format::Table;
        self
    }

    /// One row: a cell per column, in order.
    pub fn push(&mut self, cells: Vec<Value>) -> io::Result<()> {
        debug_assert_eq!(cells.len(), self.columns.len());
        match self.format {
            Format::Table => {
                let texts: Vec<String> = cells.iter().map(|v| cell_text(v, "-")).collect();
                match &self.widths {
                    Some(widths) => {
                        write_aligned(&mut self.out, &self.columns, widths, &texts)?;
                    }
                    None => {
                        self.pending.push(texts);
                        if self.pending.len() >= WIDTH_SAMPLE {
                            self.flush_pending()?;
                        }
                    }
                }
            }
            Format::Csv => {
                let texts: Vec<String> = cells.iter().map(|v| cell_text(v, "")).collect();
                output::write_csv_record(&mut self.out, &texts)?;
            }
            Format::Json | Format::Jsonl => {
                let object: Map<String, Value> = self
                    .columns
                    .iter()
                    .map(|c| c.name.to_string())
                    .zip(cells)
                    .collect();
                if self.format == Format::Json {
                    self.out
                        .write_all(if self.rows == 0 { b"[\n  " } else { b",\n  " })?;
                }
                serde_json::to_writer(&mut self.out, &object)?;
                if self.format == Format::Jsonl {
                    self.out.write_all(b"\n")?;
                }
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// Ends the output (a table with no rows still prints its header; a
    /// JSON array closes) and hands back the writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        match self.format {
            Format::Table => self.flush_pending()?,
            Format::Json if self.rows == 0 => self.out.write_all(b"[]\n")?,
            Format::Json => self.out.write_all(b"\n]\n")?,
            Format::Csv | Format::Jsonl => {}
        }
        self.out.flush()?;
        Ok(self.out)
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if self.widths.is_some() {
            return Ok(());
        }
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.name.len()).collect();
        for row in &self.pending {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.columns.iter().map(|c| c.name.to_string()).collect();
        if self.colour {
            let mut line = Vec::new();
            write_aligned(&mut line, &self.columns, &widths, &header)?;
            let line = String::from_utf8_lossy(&line);
            writeln!(self.out, "{}", crate::progress::bold(line.trim_end(), true))?;
        } else {
            write_aligned(&mut self.out, &self.columns, &widths, &header)?;
        }
        for row in std::mem::take(&mut self.pending) {
            write_aligned(&mut self.out, &self.columns, &widths, &row)?;
        }
        self.widths = Some(widths);
        Ok(())
    }
}

fn write_aligned(
    w: &mut impl Write,
    columns: &[Column],
    widths: &[usize],
    cells: &[String],
) -> io::Result<()> {
    let mut line = String::new();
    for (i, ((cell, width), column)) in cells.iter().zip(widths).zip(columns).enumerate() {
        if i > 0 {
            line.push_str("  ");
        }
        let pad = width.saturating_sub(cell.chars().count());
        if column.align == Align::Right {
            line.extend(std::iter::repeat_n(' ', pad));
            line.push_str(cell);
        } else {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    writeln!(w, "{}", line.trim_end())
}

/// A cell as text: strings as they are, `null` as `none`.
fn cell_text(v: &Value, none: &str) -> String {
    match v {
        Value::Null => none.to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `0x` and lower-case hex digits: how addresses are shown.
pub fn hex(v: u64) -> Value {
    Value::String(format!("{v:#x}"))
}

/// Bytes as lower-case hex digits, no separator.
pub fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(format: Format, rows: &[Vec<Value>]) -> String {
        let mut out = Rows::new(Vec::new(), format, &[text("name"), num("n")]).unwrap();
        for r in rows {
            out.push(r.clone()).unwrap();
        }
        String::from_utf8(out.finish().unwrap()).unwrap()
    }

    #[test]
    fn writes_each_format() {
        let rows = vec![
            vec![json!("a,b"), json!(1000)],
            vec![json!("long name"), Value::Null],
        ];
        assert_eq!(
            render(Format::Table, &rows),
            "name          n\na,b        1000\nlong name     -\n"
        );
        assert_eq!(
            render(Format::Csv, &rows),
            "name,n\n\"a,b\",1000\nlong name,\n"
        );
        assert_eq!(
            render(Format::Json, &rows),
            "[\n  {\"name\":\"a,b\",\"n\":1000},\n  {\"name\":\"long name\",\"n\":null}\n]\n"
        );
        assert_eq!(
            render(Format::Jsonl, &rows),
            "{\"name\":\"a,b\",\"n\":1000}\n{\"name\":\"long name\",\"n\":null}\n"
        );
    }

    #[test]
    fn empty_outputs_are_still_well_formed() {
        assert_eq!(render(Format::Table, &[]), "name  n\n");
        assert_eq!(render(Format::Json, &[]), "[]\n");
        assert_eq!(render(Format::Csv, &[]), "name,n\n");
        assert_eq!(render(Format::Jsonl, &[]), "");
    }

    #[test]
    fn fixes_widths_after_the_sample() {
        let mut rows: Vec<Vec<Value>> = (0..WIDTH_SAMPLE)
            .map(|_| vec![json!("x"), json!(1)])
            .collect();
        rows.push(vec![json!("much longer"), json!(2)]);
        let text = render(Format::Table, &rows);
        assert!(text.ends_with("\nmuch longer  2\n"), "{text}");
        assert!(text.starts_with("name  n\nx     1\n"), "{text}");
    }

    #[test]
    fn hex_helpers() {
        assert_eq!(hex(0x401000), json!("0x401000"));
        assert_eq!(hex_bytes(&[0x0f, 0x05]), "0f05");
    }
}
