//! Every table of a trace: its columns, their Arrow types and their Parquet
//! encodings. This is the only place where a column name or type is written
//! down; the recorder, the command line and the docs all use it.
//!
//! | table          | partitioned by | one row per                                   |
//! |----------------|----------------|-----------------------------------------------|
//! | `blocks`       | `vcpu=N`       | executed block, in execution order            |
//! | `block_dict`   | -              | distinct translated block                     |
//! | `block_counts` | -              | (vCPU, block) pair that executed at least once |
//! | `mem`          | `vcpu=N`       | memory access, in execution order (option `mem=`) |
//! | `regs`         | `vcpu=N`       | registers read at block entry or a system call's entry (option `regs=`) |
//! | `syscalls`     | `vcpu=N`       | system call, in the order they were made (option `syscalls=`) |
//! | `modules`      | -              | file mapped into the guest: the program, its interpreter, each `mmap`ed file |

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{BinaryBuilder, StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::{
    Array, ArrayRef, BinaryArray, ListArray, RecordBatch, StringArray, StructArray, UInt32Array,
    UInt64Array,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The tables of a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Executed blocks per vCPU, in execution order: `seq`, `block_id`.
    Blocks,
    /// One row per distinct translated block, with its instructions.
    BlockDict,
    /// Exact execution counts per vCPU and block, from inline counters.
    BlockCounts,
    /// Memory accesses per vCPU, in execution order, with their values.
    Mem,
    /// Registers read at block entry or at system calls' entry (option
    /// `regs=`): one column per register, so its schema depends on the
    /// registers recorded (see [`regs_schema`]).
    Regs,
    /// System calls per vCPU, in order, with arguments and return value.
    Syscalls,
    /// The files mapped into the guest (the program, its interpreter and
    /// every file it maps), with build ids and when each came and went.
    Modules,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Blocks,
        Table::BlockDict,
        Table::BlockCounts,
        Table::Mem,
        Table::Syscalls,
        Table::Regs,
        Table::Modules,
    ];

    /// The table's directory name under the trace root.
    pub fn name(self) -> &'static str {
        match self {
            Table::Blocks => "blocks",
            Table::BlockDict => "block_dict",
            Table::BlockCounts => "block_counts",
            Table::Mem => "mem",
            Table::Regs => "regs",
            Table::Syscalls => "syscalls",
            Table::Modules => "modules",
        }
    }

    /// The table whose directory is `name`.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the table's rows carry a `seq` column, dense per partition.
    pub fn has_seq(self) -> bool {
        self.per_vcpu()
    }

    /// Whether the table is split into `vcpu=N` hive partitions.
    pub fn per_vcpu(self) -> bool {
        matches!(
            self,
            Table::Blocks | Table::Mem | Table::Regs | Table::Syscalls
        )
    }

    /// The table's Arrow schema, built once. For `regs`, only the columns
    /// every trace has: its register columns follow (see [`regs_schema`]).
    pub fn schema(self) -> SchemaRef {
        static BLOCKS: OnceLock<SchemaRef> = OnceLock::new();
        static DICT: OnceLock<SchemaRef> = OnceLock::new();
        static COUNTS: OnceLock<SchemaRef> = OnceLock::new();
        static MEM: OnceLock<SchemaRef> = OnceLock::new();
        static REGS: OnceLock<SchemaRef> = OnceLock::new();
        static SYSCALLS: OnceLock<SchemaRef> = OnceLock::new();
        static MODULES: OnceLock<SchemaRef> = OnceLock::new();
        match self {
            Table::Blocks => BLOCKS.get_or_init(blocks_schema).clone(),
            Table::BlockDict => DICT.get_or_init(block_dict_schema).clone(),
            Table::BlockCounts => COUNTS.get_or_init(block_counts_schema).clone(),
            Table::Mem => MEM.get_or_init(mem_schema).clone(),
            Table::Regs => REGS.get_or_init(|| regs_schema(&[])).clone(),
            Table::Syscalls => SYSCALLS.get_or_init(syscalls_schema).clone(),
            Table::Modules => MODULES.get_or_init(modules_schema).clone(),
        }
    }

    /// Parquet writer settings of the tables written through Arrow: zstd
    /// everywhere, and per column the encoding that keeps it small.
    pub fn writer_properties(self, zstd_level: i32) -> WriterProperties {
        let level = ZstdLevel::try_new(zstd_level).unwrap_or_default();
        let mut b = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_2_0)
            .set_compression(Compression::ZSTD(level))
            .set_statistics_enabled(EnabledStatistics::Chunk)
            .set_created_by(concat!("qtrace ", env!("CARGO_PKG_VERSION")).to_string());
        match self {
            // `blocks` has its own encoder: see `blocks_writer`.
            Table::Blocks => {}
            Table::BlockDict | Table::BlockCounts => {
                b = b
                    .set_column_dictionary_enabled(ColumnPath::from(col::BLOCK_ID), false)
                    .set_column_encoding(
                        ColumnPath::from(col::BLOCK_ID),
                        Encoding::DELTA_BINARY_PACKED,
                    )
                    .set_max_row_group_row_count(Some(64 * 1024));
            }
            Table::Mem => {
                // Sequence numbers rise, by one (`seq`) or by small steps
                // (`block_seq`): delta encoding. Addresses and values vary
                // too much for a dictionary to pay; without one, the v2
                // writer delta-encodes them too.
                for c in [col::SEQ, col::BLOCK_SEQ] {
                    b = b
                        .set_column_dictionary_enabled(ColumnPath::from(c), false)
                        .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
                }
                for c in [col::ADDR, col::VALUE, col::VALUE_HI] {
                    b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
                }
                b = b
                    .set_max_row_group_row_count(Some(1 << 20))
                    .set_max_row_group_bytes(Some(64 << 20));
            }
            Table::Syscalls | Table::Modules => {
                // Few rows: the writer's defaults (dictionaries) suit them.
                b = b.set_max_row_group_row_count(Some(64 * 1024));
            }
            Table::Regs => {
                // Read at block entry, rows can be as many as blocks: `seq`
                // rises by one and `block_seq` by small steps (delta
                // encoding). Register columns keep the defaults: a
                // dictionary while it pays (stack pointers, flags), then
                // plain or delta values.
                for c in [col::SEQ, col::BLOCK_SEQ] {
                    b = b
                        .set_column_dictionary_enabled(ColumnPath::from(c), false)
                        .set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
                }
                b = b
                    .set_max_row_group_row_count(Some(1 << 20))
                    .set_max_row_group_bytes(Some(64 << 20));
            }
        }
        b.build()
    }
}

/// Column names. Use these, never a literal.
pub mod col {
    pub const SEQ: &str = "seq";
    /// The guest thread (in linux-user, its Linux thread id).
    pub const TID: &str = "tid";
    pub const BLOCK_ID: &str = "block_id";
    pub const PC: &str = "pc";
    pub const SIZE: &str = "size";
    pub const N_INSNS: &str = "n_insns";
    pub const CODE: &str = "code";
    pub const SYMBOL: &str = "symbol";
    pub const INSNS: &str = "insns";
    pub const ADDR: &str = "addr";
    pub const BYTES: &str = "bytes";
    pub const DISAS: &str = "disas";
    pub const VCPU: &str = "vcpu";
    pub const EXECS: &str = "execs";
    pub const BLOCK_SEQ: &str = "block_seq";
    pub const SYSCALL_SEQ: &str = "syscall_seq";
    pub const DATA: &str = "data";
    pub const INSN: &str = "insn";
    pub const STORE: &str = "store";
    pub const VALUE: &str = "value";
    pub const VALUE_HI: &str = "value_hi";
    pub const SIGN_EXTENDED: &str = "sign_extended";
    pub const BIG_ENDIAN: &str = "big_endian";
    pub const INEXACT: &str = "inexact";
    pub const NUM: &str = "num";
    pub const NAME: &str = "name";
    /// `arg0` .. `arg7`, in order.
    pub const ARGS: [&str; 8] = [
        "arg0", "arg1", "arg2", "arg3", "arg4", "arg5", "arg6", "arg7",
    ];
    pub const RET: &str = "ret";
    pub const ERRNO: &str = "errno";
    pub const MODULE_ID: &str = "module_id";
    pub const KIND: &str = "kind";
    pub const PATH: &str = "path";
    pub const GUEST_PATH: &str = "guest_path";
    pub const BUILD_ID: &str = "build_id";
    pub const BASE: &str = "base";
    pub const BIAS: &str = "bias";
    pub const TEXT_START: &str = "text_start";
    pub const TEXT_END: &str = "text_end";
    pub const ENTRY: &str = "entry";
    pub const SEGMENTS: &str = "segments";
    pub const FILE_OFFSET: &str = "file_offset";
    pub const PROT: &str = "prot";
    pub const LOADED_VCPU: &str = "loaded_vcpu";
    pub const LOADED_BLOCK_SEQ: &str = "loaded_block_seq";
    pub const UNLOADED_VCPU: &str = "unloaded_vcpu";
    pub const UNLOADED_BLOCK_SEQ: &str = "unloaded_block_seq";
}

fn blocks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::SEQ, DataType::UInt64, false),
        Field::new(col::TID, DataType::UInt32, false),
        Field::new(col::BLOCK_ID, DataType::UInt32, false),
    ]))
}

fn insn_fields() -> Fields {
    Fields::from(vec![
        Field::new(col::ADDR, DataType::UInt64, false),
        Field::new(col::BYTES, DataType::Binary, false),
        Field::new(col::DISAS, DataType::Utf8, false),
        Field::new(col::SYMBOL, DataType::Utf8, true),
    ])
}

fn insns_item_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(insn_fields()), false))
}

fn block_dict_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::BLOCK_ID, DataType::UInt32, false),
        Field::new(col::PC, DataType::UInt64, false),
        Field::new(col::SIZE, DataType::UInt32, false),
        Field::new(col::N_INSNS, DataType::UInt32, false),
        Field::new(col::CODE, DataType::Binary, false),
        Field::new(col::SYMBOL, DataType::Utf8, true),
        Field::new(col::INSNS, DataType::List(insns_item_field()), false),
    ]))
}

fn block_counts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::VCPU, DataType::UInt32, false),
        Field::new(col::BLOCK_ID, DataType::UInt32, false),
        Field::new(col::EXECS, DataType::UInt64, false),
    ]))
}

/// A register of the `regs` table: its GDB name (the name of its column)
/// and its size in bytes, as QEMU reads it. The manifest lists them, in
/// column order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegSpec {
    pub name: String,
    pub size: u32,
}

impl RegSpec {
    /// Registers of up to 8 bytes are `UInt64` columns; wider ones
    /// `FixedSizeBinary(size)`.
    pub fn data_type(&self) -> DataType {
        if self.size <= 8 {
            DataType::UInt64
        } else {
            DataType::FixedSizeBinary(self.size as i32)
        }
    }
}

/// The schema of `regs` for these registers: `seq`, `tid`, `block_seq`,
/// `syscall_seq` (null for rows read at block entry), then one nullable
/// column per register, named after it, in the order given. A value is
/// null when it is the same as in the thread's previous row.
pub fn regs_schema(regs: &[RegSpec]) -> SchemaRef {
    let mut fields = vec![
        Field::new(col::SEQ, DataType::UInt64, false),
        Field::new(col::TID, DataType::UInt32, false),
        Field::new(col::BLOCK_SEQ, DataType::UInt64, false),
        Field::new(col::SYSCALL_SEQ, DataType::UInt64, true),
    ];
    fields.extend(
        regs.iter()
            .map(|r| Field::new(r.name.as_str(), r.data_type(), true)),
    );
    Arc::new(Schema::new(fields))
}

/// The registers of a `regs` table with its schema, and where each
/// register's bytes start in a full row: made once per trace.
#[derive(Clone, Debug)]
pub struct RegsLayout {
    regs: Vec<RegSpec>,
    offsets: Vec<usize>,
    schema: SchemaRef,
}

impl RegsLayout {
    pub fn new(regs: Vec<RegSpec>) -> RegsLayout {
        let mut offsets = Vec::with_capacity(regs.len() + 1);
        let mut at = 0;
        for r in &regs {
            offsets.push(at);
            at += r.size as usize;
        }
        offsets.push(at);
        let schema = regs_schema(&regs);
        RegsLayout {
            regs,
            offsets,
            schema,
        }
    }

    pub fn regs(&self) -> &[RegSpec] {
        &self.regs
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Where register `i`'s bytes are in a row of every register's bytes
    /// laid end to end.
    pub fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i]..self.offsets[i + 1]
    }

    /// Bytes of a row of every register's bytes laid end to end.
    pub fn row_bytes(&self) -> usize {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Bytes of the bitmap that opens [`RegsRow::values`].
    pub fn bitmap_bytes(&self) -> usize {
        self.regs.len().div_ceil(8)
    }
}

/// A row of `regs` as the recorder buffers it (without its `seq` and `tid`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegsRow {
    /// `seq` of the block execution (in `blocks`) about to execute (read at
    /// block entry) or that made the call (read at a system call).
    pub block_seq: u64,
    /// `seq` of the call in `syscalls`; none for a row read at block entry.
    pub syscall_seq: Option<u64>,
    /// Empty if no register is stored. Else a bitmap of the stored
    /// registers (bit `i % 8` of byte `i / 8` for register `i` of the
    /// layout), then the bytes of each stored register in layout order,
    /// as QEMU gives them.
    pub values: RegBytes,
}

/// The bytes of a [`RegsRow`]'s values: in the row itself up to
/// [`RegBytes::INLINE`] bytes, which holds a few registers' worth (and a
/// row stores only those that changed), so that most rows cost no
/// allocation (an allocation per row, freed by another thread, was half
/// of the recorder's time at every block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegBytes {
    Inline {
        len: u8,
        bytes: [u8; RegBytes::INLINE],
    },
    Heap(Box<[u8]>),
}

impl RegBytes {
    pub const INLINE: usize = 46;

    pub fn new(bytes: &[u8]) -> RegBytes {
        if bytes.len() <= Self::INLINE {
            let mut inline = [0; Self::INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            RegBytes::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            RegBytes::Heap(bytes.into())
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            RegBytes::Inline { len, bytes } => &bytes[..usize::from(*len).min(Self::INLINE)],
            RegBytes::Heap(bytes) => bytes,
        }
    }
}

impl Default for RegBytes {
    fn default() -> Self {
        RegBytes::new(&[])
    }
}

impl RegsRow {
    /// The row's value of each register of `layout`, in order: `None` where
    /// it is not stored. A row that does not match the layout stores none.
    pub fn values<'a>(&'a self, layout: &'a RegsLayout) -> impl Iterator<Item = Option<&'a [u8]>> {
        let values = self.values.as_slice();
        let bitmap_len = if values.is_empty() {
            0
        } else {
            layout.bitmap_bytes()
        };
        let (bitmap, mut rest) = values.split_at(bitmap_len.min(values.len()));
        layout.regs.iter().enumerate().map(move |(i, r)| {
            let stored = bitmap.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
            let size = r.size as usize;
            if !stored || rest.len() < size {
                return None;
            }
            let (value, tail) = rest.split_at(size);
            rest = tail;
            Some(value)
        })
    }
}

/// A batch of `regs` with `layout`'s columns: `rows[i]` is row
/// `first_seq + i`, read by thread `tid`. Registers of up to 8 bytes are
/// read little-endian (all the guests qtrace knows are), zero-extended.
pub fn regs_batch(layout: &RegsLayout, first_seq: u64, tid: u32, rows: &[RegsRow]) -> RecordBatch {
    use arrow_array::builder::FixedSizeBinaryBuilder;
    enum Column {
        Narrow(UInt64Builder),
        Wide(FixedSizeBinaryBuilder),
    }
    let mut columns: Vec<Column> = layout
        .regs
        .iter()
        .map(|r| {
            if r.size <= 8 {
                Column::Narrow(UInt64Builder::with_capacity(rows.len()))
            } else {
                Column::Wide(FixedSizeBinaryBuilder::with_capacity(
                    rows.len(),
                    r.size as i32,
                ))
            }
        })
        .collect();
    for row in rows {
        for (column, value) in columns.iter_mut().zip(row.values(layout)) {
            match (column, value) {
                (Column::Narrow(b), Some(v)) => {
                    let mut le = [0u8; 8];
                    le[..v.len()].copy_from_slice(v);
                    b.append_value(u64::from_le_bytes(le));
                }
                (Column::Narrow(b), None) => b.append_null(),
                (Column::Wide(b), Some(v)) => b
                    .append_value(v)
                    .expect("a register's value has its register's size"),
                (Column::Wide(b), None) => b.append_null(),
            }
        }
    }
    let mut arrays: Vec<ArrayRef> = vec![
        seq_column(first_seq, rows.len()),
        tid_column(tid, rows.len()),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.block_seq),
        )),
        Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.syscall_seq))),
    ];
    arrays.extend(columns.into_iter().map(|c| -> ArrayRef {
        match c {
            Column::Narrow(mut b) => Arc::new(b.finish()),
            Column::Wide(mut b) => Arc::new(b.finish()),
        }
    }));
    RecordBatch::try_new(layout.schema(), arrays).expect("regs batch matches its schema")
}

fn mem_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::SEQ, DataType::UInt64, false),
        Field::new(col::TID, DataType::UInt32, false),
        Field::new(col::BLOCK_SEQ, DataType::UInt64, false),
        Field::new(col::INSN, DataType::UInt16, false),
        Field::new(col::ADDR, DataType::UInt64, false),
        Field::new(col::SIZE, DataType::UInt8, false),
        Field::new(col::STORE, DataType::Boolean, false),
        Field::new(col::VALUE, DataType::UInt64, true),
        Field::new(col::VALUE_HI, DataType::UInt64, true),
        Field::new(col::SIGN_EXTENDED, DataType::Boolean, false),
        Field::new(col::BIG_ENDIAN, DataType::Boolean, false),
        Field::new(col::INEXACT, DataType::Boolean, false),
    ]))
}

fn syscalls_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new(col::SEQ, DataType::UInt64, false),
        Field::new(col::TID, DataType::UInt32, false),
        Field::new(col::BLOCK_SEQ, DataType::UInt64, false),
        Field::new(col::NUM, DataType::Int64, false),
        Field::new(col::NAME, DataType::Utf8, true),
    ];
    fields.extend(
        col::ARGS
            .iter()
            .map(|a| Field::new(*a, DataType::UInt64, false)),
    );
    fields.push(Field::new(col::RET, DataType::Int64, true));
    fields.push(Field::new(col::ERRNO, DataType::Int32, true));
    fields.push(Field::new(col::DATA, DataType::Binary, true));
    Arc::new(Schema::new(fields))
}

/// One system call, as the recorder buffers it (a row of `syscalls`
/// without its `seq`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Syscall {
    /// `seq` of the block execution (in `blocks`) that made the call.
    pub block_seq: u64,
    /// The syscall number, as the guest passed it.
    pub num: i64,
    /// Its name for the guest architecture, where known.
    pub name: Option<&'static str>,
    pub args: [u64; 8],
    /// The value returned; `None` if the call never returned (`exit`,
    /// `exit_group`, or the thread or process ended inside it).
    pub ret: Option<i64>,
    /// The bytes the call read from or wrote to its buffer (option
    /// `syscall_data=`), for the calls that have one.
    pub data: Option<Vec<u8>>,
}

impl Syscall {
    /// The error number the call returned: `-ret` when `ret` is in
    /// -4095..=-1 (Linux's error range), else none.
    pub fn errno(&self) -> Option<i32> {
        self.ret
            .filter(|r| (-4095..=-1).contains(r))
            .map(|r| (-r) as i32)
    }
}

/// A batch of `syscalls`: `rows[i]` is call `first_seq + i`.
pub fn syscalls_batch(first_seq: u64, tid: u32, rows: &[Syscall]) -> RecordBatch {
    use arrow_array::{Int32Array, Int64Array};
    let mut columns: Vec<ArrayRef> = vec![
        seq_column(first_seq, rows.len()),
        tid_column(tid, rows.len()),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.block_seq),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.num))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.name))),
    ];
    for i in 0..col::ARGS.len() {
        columns.push(Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.args[i]),
        )));
    }
    columns.push(Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.ret))));
    columns.push(Arc::new(Int32Array::from_iter(
        rows.iter().map(Syscall::errno),
    )));
    columns.push(Arc::new(BinaryArray::from_iter(
        rows.iter().map(|r| r.data.as_deref()),
    )));
    RecordBatch::try_new(Table::Syscalls.schema(), columns)
        .expect("syscalls batch matches its schema")
}

/// One memory access, as the recorder buffers it (a row of `mem` without
/// its `seq`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MemAccess {
    /// `seq` of the block execution (in `blocks`) the access belongs to.
    pub block_seq: u64,
    pub addr: u64,
    /// The value's low 64 bits.
    pub value: u64,
    /// The value's high 64 bits, for 128-bit accesses.
    pub value_hi: u64,
    /// Index of the instruction in its block.
    pub insn: u16,
    /// Bytes accessed: 1, 2, 4, 8 or 16.
    pub size: u8,
    /// [`MemAccess::STORE`] and the other flags.
    pub flags: u8,
}

impl MemAccess {
    pub const STORE: u8 = 1;
    pub const SIGN_EXTENDED: u8 = 2;
    pub const BIG_ENDIAN: u8 = 4;
    /// The value was recorded (option `mem=values`).
    pub const HAS_VALUE: u8 = 8;
    /// An atomic read-modify-write: QEMU 10 may report wrong values for it.
    pub const INEXACT: u8 = 16;
}

/// A batch of `blocks`: `ids[i]` executed as event `first_seq + i` by
/// guest thread `tid`.
pub fn blocks_batch(first_seq: u64, tid: u32, ids: &[u32]) -> RecordBatch {
    let id = UInt32Array::from(ids.to_vec());
    RecordBatch::try_new(
        Table::Blocks.schema(),
        vec![
            seq_column(first_seq, ids.len()),
            tid_column(tid, ids.len()),
            Arc::new(id),
        ],
    )
    .expect("blocks batch matches its schema")
}

/// The `seq` column of a batch: `first..first + rows`.
fn seq_column(first: u64, rows: usize) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(first..first + rows as u64))
}

/// The `tid` column of a batch made by one thread.
fn tid_column(tid: u32, rows: usize) -> ArrayRef {
    Arc::new(UInt32Array::from_iter_values(std::iter::repeat_n(
        tid, rows,
    )))
}

/// One instruction of a translated block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InsnInfo {
    pub addr: u64,
    pub bytes: Vec<u8>,
    pub disas: String,
    pub symbol: Option<String>,
}

/// One distinct translated block: a row of `block_dict`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockInfo {
    pub id: u32,
    pub pc: u64,
    /// Size in bytes of guest code.
    pub size: u32,
    pub code: Vec<u8>,
    /// The symbol that contains `pc`, where QEMU knows one.
    pub symbol: Option<String>,
    pub insns: Vec<InsnInfo>,
}

/// Builds `block_dict` batches, one column builder per column.
#[derive(Default)]
pub struct BlockDictBuilder {
    id: UInt32Builder,
    pc: UInt64Builder,
    size: UInt32Builder,
    n_insns: UInt32Builder,
    code: BinaryBuilder,
    symbol: StringBuilder,
    insn_offsets: Vec<i32>,
    insn_addr: UInt64Builder,
    insn_bytes: BinaryBuilder,
    insn_disas: StringBuilder,
    insn_symbol: StringBuilder,
}

impl BlockDictBuilder {
    pub fn append(&mut self, b: &BlockInfo) {
        if self.insn_offsets.is_empty() {
            self.insn_offsets.push(0);
        }
        self.id.append_value(b.id);
        self.pc.append_value(b.pc);
        self.size.append_value(b.size);
        self.n_insns.append_value(b.insns.len() as u32);
        self.code.append_value(&b.code);
        self.symbol.append_option(b.symbol.as_deref());
        for i in &b.insns {
            self.insn_addr.append_value(i.addr);
            self.insn_bytes.append_value(&i.bytes);
            self.insn_disas.append_value(&i.disas);
            self.insn_symbol.append_option(i.symbol.as_deref());
        }
        let last = *self.insn_offsets.last().unwrap_or(&0);
        self.insn_offsets.push(last + b.insns.len() as i32);
    }

    pub fn len(&self) -> usize {
        self.insn_offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(&mut self) -> RecordBatch {
        let mut offsets = std::mem::take(&mut self.insn_offsets);
        if offsets.is_empty() {
            offsets.push(0);
        }
        let insns = StructArray::new(
            insn_fields(),
            vec![
                Arc::new(self.insn_addr.finish()) as ArrayRef,
                Arc::new(self.insn_bytes.finish()),
                Arc::new(self.insn_disas.finish()),
                Arc::new(self.insn_symbol.finish()),
            ],
            None,
        );
        let list = ListArray::new(
            insns_item_field(),
            OffsetBuffer::new(offsets.into()),
            Arc::new(insns),
            None,
        );
        RecordBatch::try_new(
            Table::BlockDict.schema(),
            vec![
                Arc::new(self.id.finish()),
                Arc::new(self.pc.finish()),
                Arc::new(self.size.finish()),
                Arc::new(self.n_insns.finish()),
                Arc::new(self.code.finish()),
                Arc::new(self.symbol.finish()),
                Arc::new(list),
            ],
        )
        .expect("block_dict batch matches its schema")
    }
}

/// Decodes `block_dict` rows back into [`BlockInfo`]s.
pub fn block_dict_rows(batch: &RecordBatch) -> Result<Vec<BlockInfo>> {
    let id: &UInt32Array = column(batch, col::BLOCK_ID)?;
    let pc: &UInt64Array = column(batch, col::PC)?;
    let size: &UInt32Array = column(batch, col::SIZE)?;
    let code: &BinaryArray = column(batch, col::CODE)?;
    let symbol: &StringArray = column(batch, col::SYMBOL)?;
    let insns: &ListArray = column(batch, col::INSNS)?;
    let values = insns
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| Error::schema(col::INSNS, "a list of structs"))?;
    let field = |name: &str| {
        values
            .column_by_name(name)
            .ok_or_else(|| Error::schema(name, "a field of insns"))
    };
    let i_addr = downcast::<UInt64Array>(field(col::ADDR)?, col::ADDR)?;
    let i_bytes = downcast::<BinaryArray>(field(col::BYTES)?, col::BYTES)?;
    let i_disas = downcast::<StringArray>(field(col::DISAS)?, col::DISAS)?;
    let i_symbol = downcast::<StringArray>(field(col::SYMBOL)?, col::SYMBOL)?;
    let offsets = insns.value_offsets();
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let (lo, hi) = (offsets[row] as usize, offsets[row + 1] as usize);
        let insns = (lo..hi)
            .map(|k| InsnInfo {
                addr: i_addr.value(k),
                bytes: i_bytes.value(k).to_vec(),
                disas: i_disas.value(k).to_string(),
                symbol: opt_str(i_symbol, k),
            })
            .collect();
        out.push(BlockInfo {
            id: id.value(row),
            pc: pc.value(row),
            size: size.value(row),
            code: code.value(row).to_vec(),
            symbol: opt_str(symbol, row),
            insns,
        });
    }
    Ok(out)
}

/// A row of `block_counts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCount {
    pub vcpu: u32,
    pub block_id: u32,
    pub execs: u64,
}

/// A `block_counts` batch from its rows.
pub fn block_counts_batch(rows: &[BlockCount]) -> RecordBatch {
    let vcpu = UInt32Array::from_iter_values(rows.iter().map(|r| r.vcpu));
    let id = UInt32Array::from_iter_values(rows.iter().map(|r| r.block_id));
    let execs = UInt64Array::from_iter_values(rows.iter().map(|r| r.execs));
    RecordBatch::try_new(
        Table::BlockCounts.schema(),
        vec![Arc::new(vcpu), Arc::new(id), Arc::new(execs)],
    )
    .expect("block_counts batch matches its schema")
}

/// Decodes `block_counts` rows.
pub fn block_counts_rows(batch: &RecordBatch) -> Result<Vec<BlockCount>> {
    let vcpu: &UInt32Array = column(batch, col::VCPU)?;
    let id: &UInt32Array = column(batch, col::BLOCK_ID)?;
    let execs: &UInt64Array = column(batch, col::EXECS)?;
    Ok((0..batch.num_rows())
        .map(|i| BlockCount {
            vcpu: vcpu.value(i),
            block_id: id.value(i),
            execs: execs.value(i),
        })
        .collect())
}

fn segment_fields() -> Fields {
    Fields::from(vec![
        Field::new(col::ADDR, DataType::UInt64, false),
        Field::new(col::SIZE, DataType::UInt64, false),
        Field::new(col::FILE_OFFSET, DataType::UInt64, false),
        Field::new(col::PROT, DataType::UInt8, false),
    ])
}

fn segments_item_field() -> Arc<Field> {
    Arc::new(Field::new(
        "item",
        DataType::Struct(segment_fields()),
        false,
    ))
}

fn modules_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(col::MODULE_ID, DataType::UInt32, false),
        Field::new(col::KIND, DataType::Utf8, false),
        Field::new(col::PATH, DataType::Utf8, false),
        Field::new(col::GUEST_PATH, DataType::Utf8, true),
        Field::new(col::BUILD_ID, DataType::Utf8, true),
        Field::new(col::BASE, DataType::UInt64, false),
        Field::new(col::SIZE, DataType::UInt64, false),
        Field::new(col::BIAS, DataType::UInt64, true),
        Field::new(col::TEXT_START, DataType::UInt64, true),
        Field::new(col::TEXT_END, DataType::UInt64, true),
        Field::new(col::ENTRY, DataType::UInt64, true),
        Field::new(col::SEGMENTS, DataType::List(segments_item_field()), false),
        Field::new(col::LOADED_VCPU, DataType::UInt32, true),
        Field::new(col::LOADED_BLOCK_SEQ, DataType::UInt64, true),
        Field::new(col::UNLOADED_VCPU, DataType::UInt32, true),
        Field::new(col::UNLOADED_BLOCK_SEQ, DataType::UInt64, true),
    ]))
}

/// How a module came into the guest's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModuleKind {
    /// The program QEMU runs.
    Main,
    /// The program's ELF interpreter (`PT_INTERP`), which QEMU loads itself.
    Interp,
    /// A file the guest mapped with `mmap`.
    Mmap,
    /// QEMU's vDSO image (not a file), which the guest finds through its
    /// auxiliary vector (`AT_SYSINFO_EHDR`).
    Vdso,
}

impl ModuleKind {
    pub fn name(self) -> &'static str {
        match self {
            ModuleKind::Main => "main",
            ModuleKind::Interp => "interp",
            ModuleKind::Mmap => "mmap",
            ModuleKind::Vdso => "vdso",
        }
    }

    pub fn from_name(name: &str) -> Option<ModuleKind> {
        [
            ModuleKind::Main,
            ModuleKind::Interp,
            ModuleKind::Mmap,
            ModuleKind::Vdso,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// One mapping of a module's file: `size` bytes at `addr` holding the file
/// from `file_offset`, with protection `prot` (`PROT_READ` 1, `PROT_WRITE`
/// 2, `PROT_EXEC` 4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub addr: u64,
    pub size: u64,
    pub file_offset: u64,
    pub prot: u8,
}

/// A point in the trace: the block execution `block_seq` of `vcpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracePoint {
    pub vcpu: u32,
    pub block_seq: u64,
}

/// A file mapped into the guest: a row of `modules`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    pub id: u32,
    pub kind: ModuleKind,
    /// The file on the recording host (absolute, symbolic links resolved).
    pub path: String,
    /// The file as the guest named it, where known.
    pub guest_path: Option<String>,
    /// The GNU build id, lower-case hex.
    pub build_id: Option<String>,
    /// Lowest address of the module's mappings, and the bytes they span.
    pub base: u64,
    pub size: u64,
    /// Run-time address minus the ELF file's virtual address.
    pub bias: Option<u64>,
    /// The executable part: `text.0 <= pc < text.1`.
    pub text: Option<(u64, u64)>,
    pub entry: Option<u64>,
    pub segments: Vec<Segment>,
    /// The call that mapped it; `None` for what QEMU mapped before the guest ran.
    pub loaded: Option<TracePoint>,
    /// The call that unmapped its last byte; `None` if mapped until the end.
    pub unloaded: Option<TracePoint>,
}

impl Module {
    /// Whether `addr` lies in the module's span.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }
}

/// A `modules` batch from its rows.
pub fn modules_batch(rows: &[Module]) -> RecordBatch {
    use arrow_array::{UInt32Array as U32, UInt8Array};
    let u64s = |f: &dyn Fn(&Module) -> Option<u64>| -> ArrayRef {
        Arc::new(UInt64Array::from_iter(rows.iter().map(f)))
    };
    let strings = |f: &dyn Fn(&Module) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(rows.iter().map(f)))
    };
    let segs: Vec<&Segment> = rows.iter().flat_map(|m| &m.segments).collect();
    let mut offsets = vec![0i32];
    for m in rows {
        offsets.push(offsets[offsets.len() - 1] + m.segments.len() as i32);
    }
    let segments = StructArray::new(
        segment_fields(),
        vec![
            Arc::new(UInt64Array::from_iter_values(segs.iter().map(|s| s.addr))) as ArrayRef,
            Arc::new(UInt64Array::from_iter_values(segs.iter().map(|s| s.size))),
            Arc::new(UInt64Array::from_iter_values(
                segs.iter().map(|s| s.file_offset),
            )),
            Arc::new(UInt8Array::from_iter_values(segs.iter().map(|s| s.prot))),
        ],
        None,
    );
    let segments = ListArray::new(
        segments_item_field(),
        OffsetBuffer::new(offsets.into()),
        Arc::new(segments),
        None,
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(U32::from_iter_values(rows.iter().map(|m| m.id))),
        strings(&|m| Some(m.kind.name())),
        strings(&|m| Some(&m.path)),
        strings(&|m| m.guest_path.as_deref()),
        strings(&|m| m.build_id.as_deref()),
        u64s(&|m| Some(m.base)),
        u64s(&|m| Some(m.size)),
        u64s(&|m| m.bias),
        u64s(&|m| m.text.map(|t| t.0)),
        u64s(&|m| m.text.map(|t| t.1)),
        u64s(&|m| m.entry),
        Arc::new(segments),
        Arc::new(U32::from_iter(
            rows.iter().map(|m| m.loaded.map(|p| p.vcpu)),
        )),
        u64s(&|m| m.loaded.map(|p| p.block_seq)),
        Arc::new(U32::from_iter(
            rows.iter().map(|m| m.unloaded.map(|p| p.vcpu)),
        )),
        u64s(&|m| m.unloaded.map(|p| p.block_seq)),
    ];
    RecordBatch::try_new(Table::Modules.schema(), columns)
        .expect("modules batch matches its schema")
}

/// Decodes `modules` rows.
pub fn modules_rows(batch: &RecordBatch) -> Result<Vec<Module>> {
    use arrow_array::UInt8Array;
    let id: &UInt32Array = column(batch, col::MODULE_ID)?;
    let kind: &StringArray = column(batch, col::KIND)?;
    let path: &StringArray = column(batch, col::PATH)?;
    let guest_path: &StringArray = column(batch, col::GUEST_PATH)?;
    let build_id: &StringArray = column(batch, col::BUILD_ID)?;
    let base: &UInt64Array = column(batch, col::BASE)?;
    let size: &UInt64Array = column(batch, col::SIZE)?;
    let bias: &UInt64Array = column(batch, col::BIAS)?;
    let text_start: &UInt64Array = column(batch, col::TEXT_START)?;
    let text_end: &UInt64Array = column(batch, col::TEXT_END)?;
    let entry: &UInt64Array = column(batch, col::ENTRY)?;
    let segments: &ListArray = column(batch, col::SEGMENTS)?;
    let loaded_vcpu: &UInt32Array = column(batch, col::LOADED_VCPU)?;
    let loaded_seq: &UInt64Array = column(batch, col::LOADED_BLOCK_SEQ)?;
    let unloaded_vcpu: &UInt32Array = column(batch, col::UNLOADED_VCPU)?;
    let unloaded_seq: &UInt64Array = column(batch, col::UNLOADED_BLOCK_SEQ)?;
    let values = segments
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .ok_or_else(|| Error::schema(col::SEGMENTS, "a list of structs"))?;
    let field = |name: &str| {
        values
            .column_by_name(name)
            .ok_or_else(|| Error::schema(name, "a field of segments"))
    };
    let s_addr = downcast::<UInt64Array>(field(col::ADDR)?, col::ADDR)?;
    let s_size = downcast::<UInt64Array>(field(col::SIZE)?, col::SIZE)?;
    let s_offset = downcast::<UInt64Array>(field(col::FILE_OFFSET)?, col::FILE_OFFSET)?;
    let s_prot = downcast::<UInt8Array>(field(col::PROT)?, col::PROT)?;
    let opt = |a: &UInt64Array, i: usize| (!a.is_null(i)).then(|| a.value(i));
    let point = |v: &UInt32Array, s: &UInt64Array, i: usize| {
        (!v.is_null(i) && !s.is_null(i)).then(|| TracePoint {
            vcpu: v.value(i),
            block_seq: s.value(i),
        })
    };
    let offsets = segments.value_offsets();
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let kind = ModuleKind::from_name(kind.value(i))
            .ok_or_else(|| Error::schema(col::KIND, "main, interp, mmap or vdso"))?;
        let (lo, hi) = (offsets[i] as usize, offsets[i + 1] as usize);
        out.push(Module {
            id: id.value(i),
            kind,
            path: path.value(i).to_string(),
            guest_path: opt_str(guest_path, i),
            build_id: opt_str(build_id, i),
            base: base.value(i),
            size: size.value(i),
            bias: opt(bias, i),
            text: opt(text_start, i).zip(opt(text_end, i)),
            entry: opt(entry, i),
            segments: (lo..hi)
                .map(|k| Segment {
                    addr: s_addr.value(k),
                    size: s_size.value(k),
                    file_offset: s_offset.value(k),
                    prot: s_prot.value(k),
                })
                .collect(),
            loaded: point(loaded_vcpu, loaded_seq, i),
            unloaded: point(unloaded_vcpu, unloaded_seq, i),
        });
    }
    Ok(out)
}

/// A column of `batch` by name, as the array type the schema gives it.
pub fn column<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
    let array = batch
        .column_by_name(name)
        .ok_or_else(|| Error::schema(name, "a column"))?;
    downcast(array, name)
}

fn downcast<'a, T: Array + 'static>(array: &'a ArrayRef, name: &str) -> Result<&'a T> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| Error::schema(name, std::any::type_name::<T>()))
}

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_dict_round_trips() {
        let blocks = vec![
            BlockInfo {
                id: 0,
                pc: 0x401000,
                size: 5,
                code: vec![0x90, 0xe8, 1, 2, 3],
                symbol: Some("main".into()),
                insns: vec![
                    InsnInfo {
                        addr: 0x401000,
                        bytes: vec![0x90],
                        disas: "nop".into(),
                        symbol: Some("main".into()),
                    },
                    InsnInfo {
                        addr: 0x401001,
                        bytes: vec![0xe8, 1, 2, 3],
                        disas: "call 0x1".into(),
                        symbol: None,
                    },
                ],
            },
            BlockInfo {
                id: 1,
                pc: 0x500000,
                ..Default::default()
            },
        ];
        let mut b = BlockDictBuilder::default();
        for blk in &blocks {
            b.append(blk);
        }
        let batch = b.finish();
        assert_eq!(block_dict_rows(&batch).unwrap(), blocks);
    }

    #[test]
    fn syscalls_batch_nulls_and_errno() {
        use arrow_array::{Int32Array, Int64Array};
        let rows = [
            Syscall {
                block_seq: 5,
                num: 1,
                name: Some("write"),
                args: [1, 2, 3, 4, 5, 6, 7, 8],
                ret: Some(12),
                data: Some(b"hello world\n".to_vec()),
            },
            Syscall {
                num: 2,
                ret: Some(-2),
                ..Default::default()
            },
            Syscall {
                num: 999,
                ret: Some(-4096),
                ..Default::default()
            },
            Syscall {
                num: 231,
                name: Some("exit_group"),
                ..Default::default()
            },
        ];
        let batch = syscalls_batch(7, 99, &rows);
        let data: &BinaryArray = column(&batch, col::DATA).unwrap();
        assert_eq!(data.value(0), b"hello world\n");
        assert!(data.is_null(1));
        let seq: &UInt64Array = column(&batch, col::SEQ).unwrap();
        assert_eq!(seq.values().to_vec(), vec![7, 8, 9, 10]);
        let name: &StringArray = column(&batch, col::NAME).unwrap();
        assert_eq!(name.value(0), "write");
        assert!(name.is_null(1));
        let arg7: &UInt64Array = column(&batch, col::ARGS[7]).unwrap();
        assert_eq!(arg7.value(0), 8);
        let ret: &Int64Array = column(&batch, col::RET).unwrap();
        assert_eq!(ret.value(0), 12);
        assert!(ret.is_null(3));
        let errno: &Int32Array = column(&batch, col::ERRNO).unwrap();
        let errno: Vec<Option<i32>> = errno.iter().collect();
        assert_eq!(errno, vec![None, Some(2), None, None]);
    }

    #[test]
    fn modules_round_trip() {
        let rows = vec![
            Module {
                id: 0,
                kind: ModuleKind::Main,
                path: "/bin/prog".into(),
                guest_path: Some("prog".into()),
                build_id: Some("abcd".into()),
                base: 0x400000,
                size: 0x3000,
                bias: Some(0),
                text: Some((0x401000, 0x401800)),
                entry: Some(0x401020),
                segments: vec![Segment {
                    addr: 0x400000,
                    size: 0x3000,
                    file_offset: 0,
                    prot: 5,
                }],
                loaded: None,
                unloaded: None,
            },
            Module {
                id: 1,
                kind: ModuleKind::Mmap,
                path: "/usr/share/data".into(),
                guest_path: None,
                build_id: None,
                base: 0x7f00_0000_0000,
                size: 0x1000,
                bias: None,
                text: None,
                entry: None,
                segments: vec![],
                loaded: Some(TracePoint {
                    vcpu: 1,
                    block_seq: 77,
                }),
                unloaded: Some(TracePoint {
                    vcpu: 0,
                    block_seq: 99,
                }),
            },
        ];
        let batch = modules_batch(&rows);
        assert_eq!(modules_rows(&batch).unwrap(), rows);
        assert_eq!(modules_rows(&modules_batch(&[])).unwrap(), vec![]);
    }

    #[test]
    fn regs_batch_has_a_column_per_register_and_nulls_where_not_stored() {
        use arrow_array::FixedSizeBinaryArray;
        let spec = |name: &str, size| RegSpec {
            name: name.into(),
            size,
        };
        let layout = RegsLayout::new(vec![spec("rax", 8), spec("eflags", 4), spec("xmm0", 16)]);
        let schema = layout.schema();
        let types: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types[4..],
            [
                DataType::UInt64,
                DataType::UInt64,
                DataType::FixedSizeBinary(16)
            ]
        );
        assert_eq!(schema.field(6).name(), "xmm0");
        let xmm: Vec<u8> = (0..16).collect();
        // Every register, then only eflags, then none.
        let mut all = vec![0b111];
        all.extend(7u64.to_le_bytes());
        all.extend(0x246u32.to_le_bytes());
        all.extend(&xmm);
        let mut flags = vec![0b010];
        flags.extend(0x202u32.to_le_bytes());
        let rows = [
            RegsRow {
                block_seq: 4,
                syscall_seq: None,
                values: RegBytes::new(&all),
            },
            RegsRow {
                block_seq: 5,
                syscall_seq: Some(0),
                values: RegBytes::new(&flags),
            },
            RegsRow {
                block_seq: 6,
                syscall_seq: None,
                values: RegBytes::default(),
            },
        ];
        let batch = regs_batch(&layout, 10, 7, &rows);
        let u64s = |name| -> Vec<Option<u64>> {
            column::<UInt64Array>(&batch, name)
                .unwrap()
                .iter()
                .collect()
        };
        assert_eq!(u64s(col::SEQ), [Some(10), Some(11), Some(12)]);
        assert_eq!(u64s(col::SYSCALL_SEQ), [None, Some(0), None]);
        assert_eq!(u64s("rax"), [Some(7), None, None]);
        assert_eq!(u64s("eflags"), [Some(0x246), Some(0x202), None]);
        let wide: &FixedSizeBinaryArray = column(&batch, "xmm0").unwrap();
        assert_eq!(wide.value(0), xmm.as_slice());
        assert!(wide.is_null(1) && wide.is_null(2));
        // A row cut short stores nothing it cannot hold.
        let short = RegsRow {
            values: RegBytes::new(&[0b111, 1, 2]),
            ..Default::default()
        };
        assert!(short.values(&layout).all(|v| v.is_none()));
    }

    #[test]
    fn blocks_batch_numbers_rows_from_first_seq() {
        let batch = blocks_batch(10, 42, &[7, 8, 7]);
        let seq: &UInt64Array = column(&batch, col::SEQ).unwrap();
        assert_eq!(seq.values().to_vec(), vec![10, 11, 12]);
    }
}
