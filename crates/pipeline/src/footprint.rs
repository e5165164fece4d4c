//! What reading a Parquet file will allocate, from its footer and its page headers, before any
//! page is decompressed. Why: the Parquet reader sizes each page's buffer from the page header
//! (`uncompressed_page_size`) and zero-fills it, so a 749-byte file whose header claims 2 GiB
//! makes it allocate 2 GiB per page; and a few hundred KB of run-length-encoded rows can decode
//! to gigabytes. Both are known from the headers alone: this module reads them (a small Thrift
//! compact-protocol walker) and sums what decoding will hold.
use parquet::basic::Type as Physical;
use parquet::file::metadata::ParquetMetaData;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

/// What a read of the whole file allocates at its peak, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Footprint {
    /// The decoded columns (values, offsets, definition/repetition levels), all rows.
    pub decoded: u64,
    /// One decompressed page per column at a time (the largest page of each column).
    pub pages: u64,
    /// Rows in the file.
    pub rows: u64,
}

impl Footprint {
    /// Peak bytes of reading `rows` rows at a time.
    pub fn for_batch(&self, rows: u64) -> u64 {
        let per_row = if self.rows == 0 { 0 } else { self.decoded.div_ceil(self.rows) };
        self.pages.saturating_add(per_row.saturating_mul(rows.min(self.rows)))
    }
    /// Peak bytes of reading every row into one batch (the batches, then their concatenation).
    pub fn whole(&self) -> u64 {
        self.pages.saturating_add(self.decoded.saturating_mul(2))
    }
}

/// The footprint of the file `file` with footer `meta`; an error (as text) when a page header
/// is unreadable or claims an impossible size.
pub(crate) fn footprint(file: &File, meta: &ParquetMetaData) -> Result<Footprint, String> {
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut reader = BufReader::with_capacity(8192, file);
    let mut fp = Footprint { rows: meta.file_metadata().num_rows().max(0) as u64, ..Footprint::default() };
    let columns = meta.file_metadata().schema_descr().num_columns();
    let mut largest_page = vec![0u64; columns];
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for (c, col) in rg.columns().iter().enumerate() {
            let at = |what: &str| format!("row group {g}, column `{}`: {what}", col.column_path());
            // Where the reader starts (as `ColumnChunkMetaData::byte_range`, which panics on a
            // negative offset or size: refused here first).
            let start = col.dictionary_page_offset().unwrap_or(col.data_page_offset());
            let len = col.compressed_size();
            let (Ok(start), Ok(len)) = (u64::try_from(start), u64::try_from(len)) else {
                return Err(at("negative offset or size in the footer"));
            };
            if start.checked_add(len).is_none_or(|end| end > file_len) {
                return Err(at(&format!("the footer places it at bytes {start}..{} of a {file_len}-byte file", start.saturating_add(len))));
            }
            let pages = read_pages(&mut reader, start, len).map_err(|e| at(&e))?;
            let values = u64::try_from(col.num_values()).map_err(|_| at("negative value count"))?;
            let page_values: u64 = pages.iter().filter(|p| !p.dictionary).map(|p| p.values).sum();
            // Levels (two i16 per value) and the values: fixed width, or offsets plus bytes.
            let count = values.max(page_values);
            let bytes = match col.column_type() {
                Physical::BOOLEAN => count,
                Physical::INT32 | Physical::FLOAT => count.saturating_mul(4),
                Physical::INT64 | Physical::DOUBLE => count.saturating_mul(8),
                Physical::INT96 => count.saturating_mul(12),
                Physical::FIXED_LEN_BYTE_ARRAY => count.saturating_mul(col.column_descr().type_length().max(0) as u64),
                Physical::BYTE_ARRAY => {
                    // Plain pages hold their bytes; a dictionary-encoded value may repeat the
                    // longest entry, which is at most the dictionary page.
                    let plain: u64 = pages.iter().filter(|p| !p.dictionary).map(|p| p.uncompressed).sum();
                    let dict = pages.iter().filter(|p| p.dictionary).map(|p| p.uncompressed).max().unwrap_or(0);
                    count.saturating_mul(8).saturating_add(plain).saturating_add(count.saturating_mul(dict))
                }
            };
            fp.decoded = fp.decoded.saturating_add(bytes).saturating_add(count.saturating_mul(4));
            let big = pages.iter().map(|p| p.uncompressed).max().unwrap_or(0);
            largest_page[c] = largest_page[c].max(big);
        }
    }
    fp.pages = largest_page.iter().fold(0u64, |a, &b| a.saturating_add(b));
    Ok(fp)
}

/// One page header's sizes.
struct Page {
    uncompressed: u64,
    values: u64,
    dictionary: bool,
}

/// The page headers of the column chunk at `start..start + len`.
fn read_pages(reader: &mut BufReader<&File>, start: u64, len: u64) -> Result<Vec<Page>, String> {
    let mut pages = Vec::new();
    let mut pos = start;
    let end = start + len;
    while pos < end {
        reader.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
        let mut counted = Counted { inner: &mut *reader, read: 0, limit: end - pos };
        let h = page_header(&mut counted).map_err(|e| format!("page header at byte {pos}: {e}"))?;
        let (uncompressed, compressed) = (u64::try_from(h.uncompressed).ok(), u64::try_from(h.compressed).ok());
        let (Some(uncompressed), Some(compressed)) = (uncompressed, compressed) else {
            return Err(format!("page header at byte {pos} has a negative size"));
        };
        pos = pos.saturating_add(counted.read).saturating_add(compressed);
        if pos > end {
            return Err(format!("a page claims {compressed} bytes past the end of its column chunk"));
        }
        pages.push(Page { uncompressed, values: h.values.max(0) as u64, dictionary: h.page_type == 2 });
    }
    Ok(pages)
}

/// A reader that counts its bytes and ends at `limit` (a header never runs past its chunk).
struct Counted<'a, R> {
    inner: &'a mut R,
    read: u64,
    limit: u64,
}

impl<R: Read> Counted<'_, R> {
    fn byte(&mut self) -> Result<u8, String> {
        if self.read >= self.limit {
            return Err("runs past the end of its column chunk".into());
        }
        let mut b = [0u8; 1];
        self.inner.read_exact(&mut b).map_err(|e| e.to_string())?;
        self.read += 1;
        Ok(b[0])
    }
    fn skip(&mut self, n: u64) -> Result<(), String> {
        if n > self.limit - self.read {
            return Err("a field runs past the end of its column chunk".into());
        }
        let copied = std::io::copy(&mut (&mut *self.inner).take(n), &mut std::io::sink()).map_err(|e| e.to_string())?;
        if copied != n {
            return Err("truncated".into());
        }
        self.read += n;
        Ok(())
    }
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f).checked_shl(shift).ok_or("varint too long")?;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }
    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }
}

/// The fields of a Parquet `PageHeader` this module needs.
#[derive(Default)]
struct Header {
    page_type: i64,
    uncompressed: i64,
    compressed: i64,
    values: i64,
}

// Thrift compact-protocol type codes.
const STRUCT: u8 = 12;

fn page_header<R: Read>(r: &mut Counted<R>) -> Result<Header, String> {
    let mut h = Header::default();
    let mut last = 0i64;
    loop {
        let (id, ty) = match field_header(r, &mut last)? {
            None => return Ok(h),
            Some(f) => f,
        };
        match (id, ty) {
            (1, 5) => h.page_type = r.zigzag()?,
            (2, 5) => h.uncompressed = r.zigzag()?,
            (3, 5) => h.compressed = r.zigzag()?,
            // data_page_header, dictionary_page_header, data_page_header_v2: num_values first.
            (5 | 7 | 8, STRUCT) => h.values = first_i32_of_struct(r)?,
            _ => skip(r, ty, 0)?,
        }
    }
}

/// A field header: `None` at the struct's end.
fn field_header<R: Read>(r: &mut Counted<R>, last: &mut i64) -> Result<Option<(i64, u8)>, String> {
    let b = r.byte()?;
    if b == 0 {
        return Ok(None);
    }
    let (delta, ty) = (i64::from(b >> 4), b & 0x0f);
    *last = if delta == 0 { r.zigzag()? } else { *last + delta };
    Ok(Some((*last, ty)))
}

fn first_i32_of_struct<R: Read>(r: &mut Counted<R>) -> Result<i64, String> {
    let mut last = 0;
    let mut values = 0;
    while let Some((id, ty)) = field_header(r, &mut last)? {
        if id == 1 && ty == 5 { values = r.zigzag()? } else { skip(r, ty, 1)? }
    }
    Ok(values)
}

/// Skip one value of compact type `ty` (nesting bounded, so a hostile header cannot recurse
/// without end).
fn skip<R: Read>(r: &mut Counted<R>, ty: u8, depth: u32) -> Result<(), String> {
    if depth > 16 {
        return Err("nested too deeply".into());
    }
    match ty {
        1 | 2 => Ok(()),
        3 => r.skip(1),
        4..=6 => r.varint().map(drop),
        7 => r.skip(8),
        8 => {
            let n = r.varint()?;
            r.skip(n)
        }
        9 | 10 => {
            let b = r.byte()?;
            let n = if b >> 4 == 15 { r.varint()? } else { u64::from(b >> 4) };
            let elem = b & 0x0f;
            for _ in 0..n {
                if elem == 1 || elem == 2 { r.skip(1)? } else { skip(r, elem, depth + 1)? }
            }
            Ok(())
        }
        11 => {
            let n = r.varint()?;
            if n == 0 {
                return Ok(());
            }
            let kv = r.byte()?;
            for _ in 0..n {
                skip(r, kv >> 4, depth + 1)?;
                skip(r, kv & 0x0f, depth + 1)?;
            }
            Ok(())
        }
        STRUCT => {
            let mut last = 0;
            while let Some((_, t)) = field_header(r, &mut last)? {
                skip(r, t, depth + 1)?;
            }
            Ok(())
        }
        other => Err(format!("unknown field type {other}")),
    }
}
