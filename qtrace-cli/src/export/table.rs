//! `qtrace export TRACE TABLE`: a table's rows as CSV, JSON lines or a JSON
//! array, in their order.
//!
//! Per-vCPU tables (`blocks`, `mem`, `syscalls`, `regs`) go vCPU by vCPU,
//! each vCPU's rows by `seq`, with the partition's `vcpu` as the first
//! column (as DuckDB and pyarrow add it). The others go in their stored
//! order (by id). Cell text follows [`super::cells`].
//!
//! `blocks` is read through `block_stream` (block ids straight from their
//! pages); the other tables through the Arrow decoder, one batch at a time,
//! decoded on a second thread while the first writes.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::mpsc;

use anyhow::{bail, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::RecordBatch;
use qtrace_format::block_stream::{clip, Blocks};
use qtrace_format::schema::{self, col};
use qtrace_format::{Table, Trace};

use super::cells::{self, Cell, Style};
use super::cursor::{KeyRange, Ordered};
use super::names::BlockNames;
use super::{parts_by_vcpu, Args, Escape, TableFormat};

/// Fails when an option does not apply to `table` (before any output).
pub fn check(table: Table, args: &Args) -> Result<()> {
    if args.seq.is_some() && !table.per_vcpu() {
        bail!(
            "--seq selects rows of per-vCPU tables (blocks, mem, syscalls, regs), not of {}",
            table.name()
        );
    }
    if args.vcpu.is_some() && !table.per_vcpu() && table != Table::BlockCounts {
        bail!("{} is not per vCPU: --vcpu does not apply", table.name());
    }
    if args.resolve && table != Table::Blocks {
        bail!(
            "--resolve adds pc and symbol to blocks, not to {}",
            table.name()
        );
    }
    Ok(())
}

pub fn run(trace: &Trace, table: Table, args: &Args, out: &mut dyn Write) -> Result<()> {
    if trace.parts(table)?.is_empty() {
        bail!(
            "{}: the trace has no {} table",
            trace.root().display(),
            table.name()
        );
    }
    let all = columns_of(trace, table, args.resolve);
    let selected = select(&all, &args.columns, table)?;
    let format = args.format.unwrap_or(TableFormat::Csv);
    let mut sink = Sink::new(out, format, &selected)?;
    if table == Table::Blocks {
        blocks(trace, args, &all, &selected, &mut sink)?;
    } else {
        arrow_rows(trace, table, args, &selected, &mut sink)?;
    }
    sink.finish()
}

/// Every column of the export, in order.
fn columns_of(trace: &Trace, table: Table, resolve: bool) -> Vec<String> {
    let schema = match table {
        Table::Regs => schema::regs_schema(&trace.manifest().regs),
        t => t.schema(),
    };
    let mut names: Vec<String> = Vec::new();
    if table.per_vcpu() {
        names.push(col::VCPU.to_string());
    }
    names.extend(schema.fields().iter().map(|f| f.name().clone()));
    if resolve {
        names.push(col::PC.to_string());
        names.push(col::SYMBOL.to_string());
    }
    names
}

/// The columns asked for (all when none), checked against the table's.
fn select(all: &[String], asked: &[String], table: Table) -> Result<Vec<String>> {
    if asked.is_empty() {
        return Ok(all.to_vec());
    }
    for (i, a) in asked.iter().enumerate() {
        if asked[..i].contains(a) {
            bail!("--columns names `{a}` twice");
        }
        if !all.contains(a) {
            bail!(
                "{} has no column `{a}` (columns: {})",
                table.name(),
                all.join(", ")
            );
        }
    }
    Ok(asked.to_vec())
}

/// `blocks`: vcpu, seq, tid, block_id, and with `--resolve` pc, symbol.
fn blocks<W: Write + ?Sized>(
    trace: &Trace,
    args: &Args,
    all: &[String],
    selected: &[String],
    sink: &mut Sink<'_, W>,
) -> Result<()> {
    let names = if args.resolve {
        Some(BlockNames::load(trace, args.debug_dirs.clone())?)
    } else {
        None
    };
    // Which of the columns (`all`'s order) each output column is.
    let which: Vec<usize> = selected
        .iter()
        .map(|s| all.iter().position(|a| a == s).expect("checked by select"))
        .collect();
    let parts = trace
        .parts(Table::Blocks)?
        .into_iter()
        .filter(|p| args.vcpu.is_none_or(|v| p.vcpu == Some(v)))
        .collect::<Vec<_>>();
    let blocks = Blocks::open(&parts)?;
    let range = args.seq.clone().unwrap_or(0..u64::MAX);
    let mut escape = Escape::default();
    use BlockCell::{Num, Text};
    for group in blocks.groups().iter().filter(|g| g.may_overlap(&range)) {
        let read = blocks.read(group, &mut |run| {
            let Some(run) = clip(run, &range) else {
                return Ok(());
            };
            for (i, &id) in run.ids.iter().enumerate() {
                let seq = run.first_seq + i as u64;
                let name = names.as_ref().and_then(|n| n.get(id));
                let row = sink.row(|column, style, out| {
                    let cell = match which[column] {
                        0 => run.vcpu.map(|v| Num(v.into())),
                        1 => Some(Num(seq)),
                        2 => Some(Num(run.tid.into())),
                        3 => Some(Num(id.into())),
                        4 => name.map(|n| Num(n.pc)),
                        _ => name.and_then(|n| n.symbol.as_deref()).map(Text),
                    };
                    match cell {
                        Some(Num(n)) => {
                            let _ = write!(out, "{n}");
                        }
                        Some(Text(s)) => cells::text(s, style, out),
                        None => cells::null(style, out),
                    }
                });
                if let Err(e) = row {
                    return Err(escape.keep(e.into()));
                }
            }
            Ok(())
        });
        escape.outcome(read)?;
    }
    Ok(())
}

/// A cell of the `blocks` export.
enum BlockCell<'a> {
    Num(u64),
    Text(&'a str),
}

/// Every other table, through the Arrow decoder.
fn arrow_rows<W: Write + ?Sized>(
    trace: &Trace,
    table: Table,
    args: &Args,
    selected: &[String],
    sink: &mut Sink<'_, W>,
) -> Result<()> {
    let mut stored: Vec<String> = selected
        .iter()
        .filter(|c| !(table.per_vcpu() && c.as_str() == col::VCPU))
        .cloned()
        .collect();
    if stored.is_empty() {
        // Only `vcpu` asked for: rows still need a column to be counted.
        stored.push(col::SEQ.to_string());
    }
    // `block_counts` carries `vcpu` as a column: --vcpu filters its rows.
    let vcpu_column = (table == Table::BlockCounts).then_some(args.vcpu).flatten();
    if vcpu_column.is_some() && !stored.iter().any(|c| c == col::VCPU) {
        stored.push(col::VCPU.to_string());
    }
    let key = args.seq.clone().map(|range| KeyRange {
        column: if table == Table::Blocks {
            col::SEQ
        } else {
            col::BLOCK_SEQ
        },
        range,
    });
    let groups: Vec<(Option<u32>, Vec<qtrace_format::PartPath>)> = if table.per_vcpu() {
        parts_by_vcpu(trace, table, args.vcpu)?
            .into_iter()
            .map(|(v, p)| (Some(v), p))
            .collect()
    } else {
        let mut parts = trace.parts(table)?;
        parts.sort_by_key(|p| p.index);
        vec![(None, parts)]
    };
    for (vcpu, parts) in groups {
        let ordered = Ordered::new(parts, key.clone(), Some(stored.clone()));
        prefetched(ordered, |batch| {
            write_batch(&batch, vcpu, vcpu_column, selected, sink)
        })?;
    }
    Ok(())
}

fn write_batch<W: Write + ?Sized>(
    batch: &RecordBatch,
    vcpu: Option<u32>,
    only_vcpu: Option<u32>,
    selected: &[String],
    sink: &mut Sink<'_, W>,
) -> Result<()> {
    // `None`: the partition's vCPU.
    let typed: Vec<Option<Cell>> = selected
        .iter()
        .map(|name| match batch.column_by_name(name) {
            Some(c) => Cell::new(name, c.as_ref()).map(Some),
            None if name == col::VCPU && vcpu.is_some() => Ok(None),
            None => bail!("column `{name}` is missing from a part"),
        })
        .collect::<Result<_>>()?;
    let row_vcpu = match only_vcpu {
        Some(_) => batch
            .column_by_name(col::VCPU)
            .and_then(|c| c.as_primitive_opt::<UInt32Type>()),
        None => None,
    };
    for row in 0..batch.num_rows() {
        if let (Some(want), Some(have)) = (only_vcpu, row_vcpu) {
            if have.value(row) != want {
                continue;
            }
        }
        sink.row(|column, style, out| match &typed[column] {
            Some(cell) => cell.write(row, style, out),
            None => out.push_str(&vcpu.unwrap_or_default().to_string()),
        })?;
    }
    Ok(())
}

/// Hands `f` the batches of `ordered`, decoded on another thread while `f`
/// writes the previous ones.
fn prefetched(ordered: Ordered, mut f: impl FnMut(RecordBatch) -> Result<()>) -> Result<()> {
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::sync_channel::<Result<RecordBatch>>(2);
        s.spawn(move || {
            for batch in ordered {
                // The receiver gone (a write failed): stop decoding.
                if tx.send(batch).is_err() {
                    break;
                }
            }
        });
        for batch in rx {
            f(batch?)?;
        }
        Ok(())
    })
}

/// The output of a table export: a CSV header, then a line per row, or
/// JSON objects (one per line, or in one array).
pub struct Sink<'w, W: Write + ?Sized> {
    out: &'w mut W,
    format: TableFormat,
    /// JSON: `"name":` of each column.
    keys: Vec<String>,
    line: String,
    rows: u64,
}

impl<'w, W: Write + ?Sized> Sink<'w, W> {
    fn new(out: &'w mut W, format: TableFormat, names: &[String]) -> Result<Self> {
        if format == TableFormat::Csv {
            let mut header = String::new();
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    header.push(',');
                }
                cells::text(n, Style::Csv, &mut header);
            }
            header.push('\n');
            out.write_all(header.as_bytes())?;
        }
        let keys = names
            .iter()
            .map(|n| {
                let mut k = String::new();
                cells::text(n, Style::Json, &mut k);
                k.push(':');
                k
            })
            .collect();
        Ok(Sink {
            out,
            format,
            keys,
            line: String::with_capacity(256),
            rows: 0,
        })
    }

    /// One row: `cell(i, style, buffer)` appends column `i`'s text.
    fn row(&mut self, mut cell: impl FnMut(usize, Style, &mut String)) -> std::io::Result<()> {
        let line = &mut self.line;
        line.clear();
        match self.format {
            TableFormat::Csv => {
                for i in 0..self.keys.len() {
                    if i > 0 {
                        line.push(',');
                    }
                    cell(i, Style::Csv, line);
                }
                line.push('\n');
            }
            TableFormat::Json | TableFormat::Jsonl => {
                if self.format == TableFormat::Json {
                    line.push_str(if self.rows == 0 { "[\n  " } else { ",\n  " });
                }
                line.push('{');
                for (i, key) in self.keys.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    line.push_str(key);
                    cell(i, Style::Json, line);
                }
                line.push('}');
                if self.format == TableFormat::Jsonl {
                    line.push('\n');
                }
            }
        }
        self.rows += 1;
        self.out.write_all(line.as_bytes())
    }

    fn finish(self) -> Result<()> {
        if self.format == TableFormat::Json {
            let end: &[u8] = if self.rows == 0 { b"[]\n" } else { b"\n]\n" };
            self.out.write_all(end)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: TableFormat, rows: &[(u64, Option<&str>)]) -> String {
        let mut buf: Vec<u8> = Vec::new();
        let names = vec!["n".to_string(), "a,b".to_string()];
        let mut sink = Sink::new(&mut buf, format, &names).unwrap();
        for &(n, s) in rows {
            sink.row(|column, style, out| match (column, s) {
                (0, _) => out.push_str(&n.to_string()),
                (_, Some(s)) => cells::text(s, style, out),
                (_, None) => cells::null(style, out),
            })
            .unwrap();
        }
        sink.finish().unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn rows_in_each_format() {
        let rows = [(1, Some("x,y")), (2, None)];
        assert_eq!(
            render(TableFormat::Csv, &rows),
            "n,\"a,b\"\n1,\"x,y\"\n2,\n"
        );
        assert_eq!(
            render(TableFormat::Jsonl, &rows),
            "{\"n\":1,\"a,b\":\"x,y\"}\n{\"n\":2,\"a,b\":null}\n"
        );
        assert_eq!(
            render(TableFormat::Json, &rows),
            "[\n  {\"n\":1,\"a,b\":\"x,y\"},\n  {\"n\":2,\"a,b\":null}\n]\n"
        );
        assert_eq!(render(TableFormat::Json, &[]), "[]\n");
        assert_eq!(render(TableFormat::Csv, &[]), "n,\"a,b\"\n");
    }
}
