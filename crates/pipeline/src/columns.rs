//! Small helpers to declare, build and read the columns hesslab artifacts use.
use arrow_array::builder::{FixedSizeListBuilder, Float64Builder, ListBuilder, UInt64Builder};
use arrow_array::{Array, BooleanArray, FixedSizeListArray, Float64Array, ListArray, StringArray, UInt32Array, UInt64Array};
pub use arrow_array::{ArrayRef, RecordBatch};
pub use arrow_schema::Field;
use arrow_schema::{DataType, Schema};
use std::sync::Arc;

/// A Boolean column that files may omit (see [`OPTIONAL_COLUMN`]).
pub fn bool_optional_field(name: &str) -> Field {
    optional(Field::new(name, DataType::Boolean, true))
}
/// A Boolean column.
pub fn bool_array(v: impl IntoIterator<Item = bool>) -> ArrayRef {
    Arc::new(BooleanArray::from(v.into_iter().collect::<Vec<_>>()))
}
/// A Boolean column's values (nulls as false).
pub fn bool_values(batch: &RecordBatch, name: &str) -> Result<Vec<bool>, String> {
    let a: &BooleanArray = col(batch, name)?;
    Ok(a.iter().map(|x| x.unwrap_or(false)).collect())
}
/// A non-null Float64 column.
pub fn f64_field(name: &str) -> Field {
    Field::new(name, DataType::Float64, false)
}
/// A nullable Float64 column.
pub fn f64_null_field(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}
/// Metadata key marking a declared column that a file may leave out (written only when the
/// stage computed it, e.g. `log`'s `sharpness`); readers get nulls then.
pub const OPTIONAL_COLUMN: &str = "hesslab.optional";

/// `f`, declared as a column that files may omit (see [`OPTIONAL_COLUMN`]).
pub fn optional(f: Field) -> Field {
    let mut m = f.metadata().clone();
    m.insert(OPTIONAL_COLUMN.to_string(), "true".to_string());
    f.with_metadata(m)
}

/// A nullable Float64 column that files may omit (see [`OPTIONAL_COLUMN`]).
pub fn f64_optional_field(name: &str) -> Field {
    optional(Field::new(name, DataType::Float64, true))
}
/// A non-null UInt32 column.
pub fn u32_field(name: &str) -> Field {
    Field::new(name, DataType::UInt32, false)
}
/// A non-null UInt64 column.
pub fn u64_field(name: &str) -> Field {
    Field::new(name, DataType::UInt64, false)
}
/// A non-null Utf8 column.
pub fn utf8_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, false)
}
/// A nullable Utf8 column.
pub fn utf8_null_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}
/// `FixedSizeList<Float64>(n)`; n = 0 declares "any size".
pub fn fixed_f64_field(name: &str, n: i32) -> Field {
    Field::new(name, DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float64, false)), n), false)
}
/// A `List<Float64>` column.
pub fn list_f64_field(name: &str) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new("item", DataType::Float64, true))), false)
}
/// A `List<UInt64>` column.
pub fn list_u64_field(name: &str) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new("item", DataType::UInt64, true))), false)
}

/// A Float64 array.
pub fn f64_array(v: impl IntoIterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(v))
}
/// A nullable Float64 array.
pub fn f64_opt_array(v: impl IntoIterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(v.into_iter().collect::<Float64Array>())
}
/// A UInt32 array.
pub fn u32_array(v: impl IntoIterator<Item = u32>) -> ArrayRef {
    Arc::new(UInt32Array::from_iter_values(v))
}
/// A nullable UInt64 column.
pub fn u64_null_field(name: &str) -> Field {
    Field::new(name, DataType::UInt64, true)
}
/// A nullable UInt64 array.
pub fn u64_opt_array(v: impl IntoIterator<Item = Option<u64>>) -> ArrayRef {
    Arc::new(v.into_iter().collect::<UInt64Array>())
}
/// A nullable UInt64 column's values.
pub fn u64_opt_values(batch: &RecordBatch, name: &str) -> Result<Vec<Option<u64>>, String> {
    let a: &UInt64Array = col(batch, name)?;
    Ok(a.iter().collect())
}
/// A UInt64 array.
pub fn u64_array(v: impl IntoIterator<Item = u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(v))
}
/// A Utf8 array.
pub fn utf8_array<S: AsRef<str>>(v: impl IntoIterator<Item = S>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}
/// A nullable Utf8 array.
pub fn utf8_opt_array(v: impl IntoIterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(v.into_iter().collect::<StringArray>())
}
/// Rows of width `n` from a flat row-major buffer.
pub fn fixed_f64_array(flat: &[f64], n: usize) -> ArrayRef {
    let rows = flat.len().checked_div(n).unwrap_or(0);
    let mut b = FixedSizeListBuilder::with_capacity(Float64Builder::with_capacity(flat.len()), n as i32, rows)
        .with_field(Arc::new(Field::new("item", DataType::Float64, false)));
    for r in 0..rows {
        b.values().append_slice(&flat[r * n..(r + 1) * n]);
        b.append(true);
    }
    Arc::new(b.finish())
}
/// A `List<Float64>` array, one list per row.
pub fn list_f64_array<'a>(rows: impl IntoIterator<Item = &'a [f64]>) -> ArrayRef {
    let mut b = ListBuilder::new(Float64Builder::new());
    for r in rows {
        b.values().append_slice(r);
        b.append(true);
    }
    Arc::new(b.finish())
}
/// A `List<UInt64>` array, one list per row.
pub fn list_u64_array<'a>(rows: impl IntoIterator<Item = &'a [u64]>) -> ArrayRef {
    let mut b = ListBuilder::new(UInt64Builder::new());
    for r in rows {
        b.values().append_slice(r);
        b.append(true);
    }
    Arc::new(b.finish())
}

/// Errors when reading a column: the message names the column.
pub fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    let c = batch.column_by_name(name).ok_or_else(|| format!("column `{name}` is missing"))?;
    c.as_any().downcast_ref::<T>().ok_or_else(|| format!("column `{name}` has type {:?}", c.data_type()))
}
/// A Float64 column's values (nulls as NaN).
pub fn f64_values(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, String> {
    let a: &Float64Array = col(batch, name)?;
    Ok(a.iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}
/// A Float64 column's values, every one finite: a null, NaN or infinity is an error naming the
/// column and the row (a reader of numbers checks them).
pub fn finite_f64_values(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, String> {
    let a: &Float64Array = col(batch, name)?;
    a.iter()
        .enumerate()
        .map(|(r, x)| match x {
            Some(v) if v.is_finite() => Ok(v),
            Some(v) => Err(format!("column `{name}` row {r} is {v}, not a finite number")),
            None => Err(format!("column `{name}` row {r} is null")),
        })
        .collect()
}
/// The first row of `values` that is not finite, with its value.
pub fn first_non_finite(values: &[f64]) -> Option<(usize, f64)> {
    values.iter().position(|v| !v.is_finite()).map(|i| (i, values[i]))
}
/// A nullable Float64 column's values.
pub fn f64_opt_values(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, String> {
    let a: &Float64Array = col(batch, name)?;
    Ok(a.iter().collect())
}
/// A UInt32 column's values (nulls are an error).
pub fn u32_values(batch: &RecordBatch, name: &str) -> Result<Vec<u32>, String> {
    let a: &UInt32Array = col(batch, name)?;
    if a.null_count() > 0 {
        return Err(format!("column `{name}` has nulls"));
    }
    Ok(a.values().to_vec())
}
/// A UInt64 column's values.
pub fn u64_values(batch: &RecordBatch, name: &str) -> Result<Vec<u64>, String> {
    let a: &UInt64Array = col(batch, name)?;
    Ok(a.values().to_vec())
}
/// A text column's values (nulls as "").
pub fn utf8_values(batch: &RecordBatch, name: &str) -> Result<Vec<String>, String> {
    Ok(strings(batch, name)?.iter().map(|s| s.unwrap_or("").to_string()).collect())
}
/// A nullable text column's values.
pub fn utf8_opt_values(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>, String> {
    Ok(strings(batch, name)?.iter().map(|s| s.map(str::to_string)).collect())
}
fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, String> {
    let c = batch.column_by_name(name).ok_or_else(|| format!("column `{name}` is missing"))?;
    arrow_array::cast::AsArray::as_string_opt::<i32>(c.as_ref())
        .ok_or_else(|| format!("column `{name}` has type {:?}, expected Utf8", c.data_type()))
}
/// Flat row-major values and the row width of a `FixedSizeList<Float64>` column.
pub fn fixed_f64_values(batch: &RecordBatch, name: &str) -> Result<(Vec<f64>, usize), String> {
    fixed_f64_slice(batch, name).map(|(v, n)| (v.to_vec(), n))
}
/// The list size of a `FixedSizeList` column in a schema.
pub fn fixed_list_len(schema: &Schema, name: &str) -> Result<usize, String> {
    let f = schema.field_with_name(name).map_err(|_| format!("column `{name}` is missing"))?;
    match f.data_type() {
        DataType::FixedSizeList(_, n) => usize::try_from(*n).map_err(|_| format!("column `{name}` has list size {n}")),
        other => Err(format!("column `{name}` has type {other:?}, expected a FixedSizeList")),
    }
}
/// As [`fixed_f64_values`], borrowed from the batch (row-major, list size n).
pub fn fixed_f64_slice<'a>(batch: &'a RecordBatch, name: &str) -> Result<(&'a [f64], usize), String> {
    let a: &FixedSizeListArray = col(batch, name)?;
    let n = a.value_length() as usize;
    let vals = a.values().as_any().downcast_ref::<Float64Array>().ok_or_else(|| format!("column `{name}` items are not Float64"))?;
    let off = a.offset() * n;
    Ok((&vals.values()[off..off + a.len() * n], n))
}
/// A `List<Float64>` column's rows.
pub fn list_f64_values(batch: &RecordBatch, name: &str) -> Result<Vec<Vec<f64>>, String> {
    let a: &ListArray = col(batch, name)?;
    let mut out = Vec::with_capacity(a.len());
    for i in 0..a.len() {
        let v = a.value(i);
        let v = v.as_any().downcast_ref::<Float64Array>().ok_or_else(|| format!("column `{name}` items are not Float64"))?;
        out.push(v.iter().map(|x| x.unwrap_or(f64::NAN)).collect());
    }
    Ok(out)
}

/// A Rust value stored as one Arrow column: its field, its array and how to read it back. The
/// types hesslab's artifacts use — `u32`, `u64`, `f64`, `String` (non-null) and `Option<f64>`,
/// `Option<u64>`, `Option<String>` (nullable) — so that a row type declared with [`rows!`](crate::rows)
/// gets its schema, encoder and decoder from its field list alone. A nullable column that a
/// file does not have reads as nulls (files written before the column existed still decode).
pub trait ColumnType: Sized {
    /// The column's field.
    fn field(name: &str) -> Field;
    /// The values as an array.
    fn array(values: impl Iterator<Item = Self>) -> ArrayRef;
    /// The column's values (the message names the column).
    fn values(batch: &RecordBatch, name: &str) -> Result<Vec<Self>, String>;
}

/// `ColumnType` for a type from its field, array and values helpers.
macro_rules! column_type {
    ($ty:ty, $field:ident, $array:ident, $values:ident, nullable = $nullable:literal) => {
        impl ColumnType for $ty {
            fn field(name: &str) -> Field {
                $field(name)
            }
            fn array(values: impl Iterator<Item = Self>) -> ArrayRef {
                $array(values)
            }
            fn values(batch: &RecordBatch, name: &str) -> Result<Vec<Self>, String> {
                if $nullable && batch.column_by_name(name).is_none() {
                    return Ok(std::iter::repeat_with(Default::default).take(batch.num_rows()).collect());
                }
                $values(batch, name)
            }
        }
    };
}
column_type!(u32, u32_field, u32_array, u32_values, nullable = false);
column_type!(u64, u64_field, u64_array, u64_values, nullable = false);
column_type!(f64, f64_field, f64_array, f64_values, nullable = false);
column_type!(String, utf8_field, utf8_array, utf8_values, nullable = false);
column_type!(Option<f64>, f64_null_field, f64_opt_array, f64_opt_values, nullable = true);
column_type!(Option<u64>, u64_null_field, u64_opt_array, u64_opt_values, nullable = true);
column_type!(Option<String>, utf8_null_field, utf8_opt_array, utf8_opt_values, nullable = true);

/// A row type whose fields are its columns, in schema order: what [`rows!`](crate::rows)
/// implements.
pub trait Rows: Sized {
    /// (column name, doc) in schema order.
    const COLUMNS: &'static [(&'static str, &'static str)];
    /// The columns' fields.
    fn fields() -> Vec<Field>;
    /// The rows as one array per column.
    fn arrays(rows: &[Self]) -> Vec<ArrayRef>;
    /// The rows of a batch.
    fn read(batch: &RecordBatch) -> Result<Vec<Self>, String>;
    /// The rows as a batch of exactly these columns.
    fn batch(rows: &[Self]) -> Result<RecordBatch, String> {
        RecordBatch::try_new(Arc::new(Schema::new(Self::fields())), Self::arrays(rows)).map_err(|e| e.to_string())
    }
}

/// Declare a row type once — each field a column named as the field, of the field's
/// [`ColumnType`], documented by its doc comment — and get its [`Rows`] implementation: the
/// schema, the encoder and the decoder cannot disagree, and adding a column is one line.
///
/// ```
/// hesslab_pipeline::rows! {
///     /// One quadrature node.
///     #[derive(Debug, Clone, PartialEq)]
///     pub struct Node {
///         /// Probe index.
///         pub probe: u32,
///         /// Ritz value.
///         pub node: f64,
///     }
/// }
/// use hesslab_pipeline::columns::Rows;
/// let rows = vec![Node { probe: 0, node: 1.5 }];
/// let batch = Node::batch(&rows).unwrap();
/// assert_eq!(Node::read(&batch).unwrap(), rows);
/// assert_eq!(Node::COLUMNS[1], ("node", "Ritz value."));
/// ```
#[macro_export]
macro_rules! rows {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[doc = $doc:literal])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[doc = $doc])* $fvis $field: $ty, )*
        }
        impl $crate::columns::Rows for $name {
            const COLUMNS: &'static [(&'static str, &'static str)] = &[ $( (stringify!($field), concat!($($doc),*).trim_ascii()) ),* ];
            fn fields() -> Vec<$crate::columns::Field> {
                vec![ $( <$ty as $crate::columns::ColumnType>::field(stringify!($field)) ),* ]
            }
            fn arrays(rows: &[Self]) -> Vec<$crate::columns::ArrayRef> {
                vec![ $( <$ty as $crate::columns::ColumnType>::array(rows.iter().map(|r| r.$field.clone())) ),* ]
            }
            fn read(batch: &$crate::columns::RecordBatch) -> Result<Vec<Self>, String> {
                $( let mut $field = <$ty as $crate::columns::ColumnType>::values(batch, stringify!($field))?.into_iter(); )*
                (0..batch.num_rows())
                    .map(|r| Ok($name { $( $field: $field.next().ok_or_else(|| format!("column `{}` ends before row {r}", stringify!($field)))?, )* }))
                    .collect()
            }
        }
    };
}
