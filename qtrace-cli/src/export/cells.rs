//! One cell of an Arrow column as CSV or JSON text, for every type a trace
//! holds.
//!
//! Exports write millions of rows, so a column is looked at once per batch
//! ([`Cell::new`] picks the typed array) and each cell is then written
//! straight into the line being built, without a `serde_json::Value` per
//! cell. Only nested columns (`block_dict.insns`, `modules.segments`) go
//! through `Value`, as a JSON array or object (in CSV: that JSON, quoted).
//!
//! The rules, the same for every table:
//! - integers and booleans as they are (JSON numbers and `true`/`false`);
//! - binary (`code`, `data`, wide registers) as lower-case hex digits;
//! - null as an empty CSV field or JSON `null`.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{
    Array, BinaryArray, BooleanArray, FixedSizeBinaryArray, PrimitiveArray, StringArray,
};
use arrow_schema::DataType;
use serde_json::{Map, Value};

/// The text a cell is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Csv,
    Json,
}

/// A column of one batch, typed.
pub enum Cell<'a> {
    U8(&'a PrimitiveArray<UInt8Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    U64(&'a PrimitiveArray<UInt64Type>),
    I8(&'a PrimitiveArray<Int8Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    F64(&'a PrimitiveArray<Float64Type>),
    Bool(&'a BooleanArray),
    Utf8(&'a StringArray),
    Binary(&'a BinaryArray),
    Fixed(&'a FixedSizeBinaryArray),
    /// Lists and structs, written as JSON.
    Nested(&'a dyn Array),
}

impl<'a> Cell<'a> {
    /// The typed view of `array`; `name` is for the error when its type is
    /// none a trace uses.
    pub fn new(name: &str, array: &'a dyn Array) -> Result<Cell<'a>> {
        Ok(match array.data_type() {
            DataType::UInt8 => Cell::U8(array.as_primitive()),
            DataType::UInt16 => Cell::U16(array.as_primitive()),
            DataType::UInt32 => Cell::U32(array.as_primitive()),
            DataType::UInt64 => Cell::U64(array.as_primitive()),
            DataType::Int8 => Cell::I8(array.as_primitive()),
            DataType::Int16 => Cell::I16(array.as_primitive()),
            DataType::Int32 => Cell::I32(array.as_primitive()),
            DataType::Int64 => Cell::I64(array.as_primitive()),
            DataType::Float32 => Cell::F32(array.as_primitive()),
            DataType::Float64 => Cell::F64(array.as_primitive()),
            DataType::Boolean => Cell::Bool(array.as_boolean()),
            DataType::Utf8 => Cell::Utf8(array.as_string()),
            DataType::Binary => Cell::Binary(array.as_binary()),
            DataType::FixedSizeBinary(_) => Cell::Fixed(array.as_fixed_size_binary()),
            DataType::List(_) | DataType::Struct(_) => {
                // Checked here, once, so that writing a cell cannot fail.
                check_nested(name, array.data_type())?;
                Cell::Nested(array)
            }
            other => bail!("column `{name}` has type {other}, which export cannot write"),
        })
    }

    /// Appends row `row` of the column to `out`.
    pub fn write(&self, row: usize, style: Style, out: &mut String) {
        let array: &dyn Array = match self {
            Cell::U8(a) => *a,
            Cell::U16(a) => *a,
            Cell::U32(a) => *a,
            Cell::U64(a) => *a,
            Cell::I8(a) => *a,
            Cell::I16(a) => *a,
            Cell::I32(a) => *a,
            Cell::I64(a) => *a,
            Cell::F32(a) => *a,
            Cell::F64(a) => *a,
            Cell::Bool(a) => *a,
            Cell::Utf8(a) => *a,
            Cell::Binary(a) => *a,
            Cell::Fixed(a) => *a,
            Cell::Nested(a) => *a,
        };
        if array.is_null(row) {
            null(style, out);
            return;
        }
        // `write!` into a String cannot fail.
        let _ = match self {
            Cell::U8(a) => write!(out, "{}", a.value(row)),
            Cell::U16(a) => write!(out, "{}", a.value(row)),
            Cell::U32(a) => write!(out, "{}", a.value(row)),
            Cell::U64(a) => write!(out, "{}", a.value(row)),
            Cell::I8(a) => write!(out, "{}", a.value(row)),
            Cell::I16(a) => write!(out, "{}", a.value(row)),
            Cell::I32(a) => write!(out, "{}", a.value(row)),
            Cell::I64(a) => write!(out, "{}", a.value(row)),
            Cell::F32(a) => write!(out, "{}", float(f64::from(a.value(row)))),
            Cell::F64(a) => write!(out, "{}", float(a.value(row))),
            Cell::Bool(a) => write!(out, "{}", a.value(row)),
            Cell::Utf8(a) => {
                text(a.value(row), style, out);
                Ok(())
            }
            Cell::Binary(a) => {
                hex_cell(a.value(row), style, out);
                Ok(())
            }
            Cell::Fixed(a) => {
                hex_cell(a.value(row), style, out);
                Ok(())
            }
            Cell::Nested(a) => {
                let json = to_json(*a, row).to_string();
                match style {
                    Style::Json => out.push_str(&json),
                    Style::Csv => csv_text(&json, out),
                }
                Ok(())
            }
        };
    }
}

/// A null cell.
pub fn null(style: Style, out: &mut String) {
    if style == Style::Json {
        out.push_str("null");
    }
}

/// A string cell: quoted and escaped for JSON, quoted where RFC 4180 says
/// for CSV.
pub fn text(s: &str, style: Style, out: &mut String) {
    match style {
        Style::Json => json_string(s, out),
        Style::Csv => csv_text(s, out),
    }
}

fn json_string(s: &str, out: &mut String) {
    // serde_json's escaping, into our buffer.
    out.push_str(&Value::from(s).to_string());
}

fn csv_text(s: &str, out: &mut String) {
    if s.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(s);
    }
}

/// Bytes as lower-case hex: a JSON string, or a bare CSV field.
fn hex_cell(bytes: &[u8], style: Style, out: &mut String) {
    if style == Style::Json {
        out.push('"');
    }
    push_hex(bytes, out);
    if style == Style::Json {
        out.push('"');
    }
}

/// Appends `bytes` as lower-case hex digits.
pub fn push_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

/// A float that JSON can hold: NaN and infinities are not numbers there.
fn float(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        "null".to_string()
    }
}

fn check_nested(name: &str, t: &DataType) -> Result<()> {
    match t {
        DataType::List(item) => check_nested(name, item.data_type()),
        DataType::Struct(fields) => fields
            .iter()
            .try_for_each(|f| check_nested(name, f.data_type())),
        DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Boolean
        | DataType::Utf8
        | DataType::Binary
        | DataType::FixedSizeBinary(_) => Ok(()),
        other => bail!("column `{name}` holds {other}, which export cannot write"),
    }
}

/// Row `row` of `array` as JSON, by the same rules as the cells (types
/// checked by [`check_nested`]).
pub fn to_json(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    match array.data_type() {
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).into(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).into(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).into(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).into(),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).into(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).into(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
        DataType::Float32 => f64::from(array.as_primitive::<Float32Type>().value(row)).into(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).into(),
        DataType::Boolean => array.as_boolean().value(row).into(),
        DataType::Utf8 => array.as_string::<i32>().value(row).into(),
        DataType::Binary => hex_value(array.as_binary::<i32>().value(row)),
        DataType::FixedSizeBinary(_) => hex_value(array.as_fixed_size_binary().value(row)),
        DataType::List(_) => {
            let items = array.as_list::<i32>().value(row);
            Value::Array((0..items.len()).map(|i| to_json(&items, i)).collect())
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let object: Map<String, Value> = fields
                .iter()
                .zip(s.columns())
                .map(|(f, c)| (f.name().clone(), to_json(c, row)))
                .collect();
            Value::Object(object)
        }
        _ => Value::Null,
    }
}

fn hex_value(bytes: &[u8]) -> Value {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(bytes, &mut s);
    Value::String(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StructBuilder, UInt64Builder};
    use arrow_array::{ArrayRef, UInt64Array};
    use arrow_schema::Field;

    fn cells(array: &dyn Array, style: Style) -> Vec<String> {
        let cell = Cell::new("c", array).unwrap();
        (0..array.len())
            .map(|i| {
                let mut s = String::new();
                cell.write(i, style, &mut s);
                s
            })
            .collect()
    }

    #[test]
    fn numbers_text_binary_and_nulls() {
        let n = UInt64Array::from(vec![Some(u64::MAX), None]);
        assert_eq!(cells(&n, Style::Csv), ["18446744073709551615", ""]);
        assert_eq!(cells(&n, Style::Json), ["18446744073709551615", "null"]);
        let s = StringArray::from(vec![Some("a,\"b\""), Some("plain"), None]);
        assert_eq!(cells(&s, Style::Csv), ["\"a,\"\"b\"\"\"", "plain", ""]);
        assert_eq!(
            cells(&s, Style::Json),
            ["\"a,\\\"b\\\"\"", "\"plain\"", "null"]
        );
        let b = BinaryArray::from(vec![Some(&[0x0f_u8, 0x05][..]), None]);
        assert_eq!(cells(&b, Style::Csv), ["0f05", ""]);
        assert_eq!(cells(&b, Style::Json), ["\"0f05\"", "null"]);
        let f = FixedSizeBinaryArray::try_from_iter([[1u8, 2, 3]].into_iter()).unwrap();
        assert_eq!(cells(&f, Style::Json), ["\"010203\""]);
    }

    #[test]
    fn lists_of_structs_are_json() {
        let fields = vec![Field::new("addr", DataType::UInt64, false)];
        let mut list = ListBuilder::new(StructBuilder::from_fields(fields, 2));
        for addr in [0x401000_u64, 0x401002] {
            let s = list.values();
            s.field_builder::<UInt64Builder>(0)
                .unwrap()
                .append_value(addr);
            s.append(true);
        }
        list.append(true);
        let array: ArrayRef = Arc::new(list.finish());
        assert_eq!(
            cells(&array, Style::Json),
            [r#"[{"addr":4198400},{"addr":4198402}]"#]
        );
        assert_eq!(
            cells(&array, Style::Csv),
            [r#""[{""addr"":4198400},{""addr"":4198402}]""#]
        );
    }

    #[test]
    fn unknown_types_are_an_error_naming_the_column() {
        let d = arrow_array::Date32Array::from(vec![1]);
        let e = Cell::new("when", &d).err().unwrap().to_string();
        assert!(e.contains("`when`"), "{e}");
    }
}
