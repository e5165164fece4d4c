//! ONNX files as `torch.onnx.export` writes them: the graph's nodes (operator, inputs, outputs,
//! attributes), its initializers (the weights, widened to f64) and its input's shape. ONNX is
//! Protocol Buffers; this reads the wire format directly for the few messages a network needs
//! (ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto), so no
//! code generator and no C++ runtime are involved. Every length is checked against the bytes
//! there are; weights stored outside the file (`external_data`) are refused by name.
use crate::error::{DataError, Result, read_file};
use crate::tensors::NamedArray;
use std::collections::BTreeMap;

/// One attribute of a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    /// A float (ONNX stores float32).
    Float(f32),
    /// An integer.
    Int(i64),
    /// Bytes (a string).
    Bytes(Vec<u8>),
    /// A tensor (the value of a `Constant`).
    Tensor(NamedArray),
    /// A list of floats.
    Floats(Vec<f32>),
    /// A list of integers.
    Ints(Vec<i64>),
}

/// One operator application.
#[derive(Debug, Clone, Default)]
pub struct OnnxNode {
    /// The node's name (may be empty).
    pub name: String,
    /// The operator ("Conv", "Gemm", …).
    pub op_type: String,
    /// Its operator set's domain ("" is the default ONNX domain).
    pub domain: String,
    /// Names of the values it reads ("" for an omitted optional input).
    pub inputs: Vec<String>,
    /// Names of the values it writes.
    pub outputs: Vec<String>,
    /// Its attributes by name.
    pub attributes: BTreeMap<String, Attribute>,
}

/// What an ONNX file holds, as far as a network goes.
#[derive(Debug, Clone, Default)]
pub struct OnnxModel {
    /// The default domain's operator set version.
    pub opset: Option<i64>,
    /// `producer_name` and `producer_version` ("pytorch 2.15.0").
    pub producer: String,
    /// Nodes in the file's (topological) order.
    pub nodes: Vec<OnnxNode>,
    /// The initializers (weights) by name.
    pub initializers: BTreeMap<String, NamedArray>,
    /// Graph inputs that are not initializers: name and dimensions (`None` for a symbolic one).
    pub inputs: Vec<(String, Vec<Option<u64>>)>,
    /// Graph output names.
    pub outputs: Vec<String>,
}

/// A protobuf message being read: its bytes and a cursor.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

/// One field: its number and its value.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }
    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at).ok_or("a number runs past the end of its message")?;
            self.at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a number is longer than 10 bytes".into())
    }
    fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or("a field runs past the end of its message (truncated?)")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    /// The next field, or `None` at the end of the message.
    fn next(&mut self) -> std::result::Result<Option<(u64, Field<'a>)>, String> {
        if self.at >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "a length does not fit in memory")?;
                Field::Bytes(self.take(n)?)
            }
            5 => Field::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"))),
            t => return Err(format!("wire type {t} (groups, or not a protobuf message)")),
        };
        Ok(Some((key >> 3, value)))
    }
}

fn text(b: &[u8]) -> std::result::Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
}

/// Repeated integers, packed or one per field.
fn push_ints(out: &mut Vec<i64>, f: Field<'_>) -> std::result::Result<(), String> {
    match f {
        Field::Varint(v) => out.push(v as i64),
        Field::Bytes(b) => {
            let mut r = Reader::new(b);
            while r.at < b.len() {
                out.push(r.varint()? as i64);
            }
        }
        _ => return Err("an integer list has the wrong wire type".into()),
    }
    Ok(())
}

/// Repeated fixed-width values (floats, doubles), packed or one per field.
fn push_fixed<const W: usize>(out: &mut Vec<[u8; W]>, f: Field<'_>) -> std::result::Result<(), String> {
    match f {
        Field::Bytes(b) if b.len() % W == 0 => out.extend(b.chunks_exact(W).map(|c| <[u8; W]>::try_from(c).expect("W bytes"))),
        Field::Fixed32(v) if W == 4 => out.push(<[u8; W]>::try_from(&v.to_le_bytes()[..]).expect("4 bytes")),
        Field::Fixed64(v) if W == 8 => out.push(<[u8; W]>::try_from(&v.to_le_bytes()[..]).expect("8 bytes")),
        _ => return Err("a number list has the wrong wire type or length".into()),
    }
    Ok(())
}

/// ONNX's TensorProto.DataType codes this reader widens to f64.
fn dtype_name(code: i64) -> std::result::Result<(&'static str, usize), String> {
    Ok(match code {
        1 => ("float32", 4),
        11 => ("float64", 8),
        10 => ("float16", 2),
        7 => ("int64", 8),
        6 => ("int32", 4),
        9 => ("bool", 1),
        2 => ("uint8", 1),
        3 => ("int8", 1),
        c => return Err(format!("element type {c} (ONNX TensorProto.DataType) is not one this reader widens to float64")),
    })
}

/// A TensorProto: its name and values.
fn tensor(b: &[u8]) -> std::result::Result<(String, NamedArray), String> {
    let mut r = Reader::new(b);
    let (mut dims, mut code, mut name, mut raw) = (Vec::new(), 1i64, String::new(), None);
    let (mut floats, mut doubles, mut ints) = (Vec::<[u8; 4]>::new(), Vec::<[u8; 8]>::new(), Vec::<i64>::new());
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (1, v) => push_ints(&mut dims, v)?,
            (2, Field::Varint(c)) => code = c as i64,
            (4, v) => push_fixed(&mut floats, v)?,
            (5 | 7, v) => push_ints(&mut ints, v)?,
            (8, Field::Bytes(n)) => name = text(n)?,
            (9, Field::Bytes(d)) => raw = Some(d),
            (10, v) => push_fixed(&mut doubles, v)?,
            (13, _) | (14, Field::Varint(1)) => {
                return Err(format!("tensor `{name}` keeps its data in an external file; export with the weights inside the .onnx file"));
            }
            _ => {}
        }
    }
    let (dtype, width) = dtype_name(code).map_err(|e| format!("tensor `{name}`: {e}"))?;
    let shape: Vec<usize> = dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("tensor `{name}` has dimension {d}")))
        .collect::<std::result::Result<_, _>>()?;
    let count =
        shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| format!("tensor `{name}`: shape {shape:?} is too large"))?;
    let values: Vec<f64> = match raw {
        Some(d) => {
            if Some(d.len()) != count.checked_mul(width) {
                return Err(format!(
                    "tensor `{name}`: shape {shape:?} of {dtype} needs {} bytes, the file has {}",
                    count.saturating_mul(width),
                    d.len()
                ));
            }
            d.chunks_exact(width)
                .map(|c| match dtype {
                    "float32" => f32::from_le_bytes(c.try_into().expect("4")) as f64,
                    "float64" => f64::from_le_bytes(c.try_into().expect("8")),
                    "float16" => crate::tensors::half_to_f64(u16::from_le_bytes(c.try_into().expect("2"))),
                    "int64" => i64::from_le_bytes(c.try_into().expect("8")) as f64,
                    "int32" => i32::from_le_bytes(c.try_into().expect("4")) as f64,
                    "int8" => c[0] as i8 as f64,
                    _ => c[0] as f64,
                })
                .collect()
        }
        None => match dtype {
            "float32" => floats.iter().map(|b| f32::from_le_bytes(*b) as f64).collect(),
            "float64" => doubles.iter().map(|b| f64::from_le_bytes(*b)).collect(),
            // float16, integers and bools live in int32_data / int64_data.
            "float16" => ints.iter().map(|&v| crate::tensors::half_to_f64(v as u16)).collect(),
            _ => ints.iter().map(|&v| v as f64).collect(),
        },
    };
    if values.len() != count {
        return Err(format!("tensor `{name}`: shape {shape:?} needs {count} values, the file has {}", values.len()));
    }
    Ok((name, NamedArray { dtype, shape, values }))
}

fn attribute(b: &[u8]) -> std::result::Result<(String, Attribute), String> {
    let mut r = Reader::new(b);
    let (mut name, mut value) = (String::new(), None);
    let (mut floats, mut ints) = (Vec::<[u8; 4]>::new(), Vec::<i64>::new());
    let mut list = false;
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (1, Field::Bytes(n)) => name = text(n)?,
            (2, Field::Fixed32(f)) => value = Some(Attribute::Float(f32::from_bits(f))),
            (3, Field::Varint(i)) => value = Some(Attribute::Int(i as i64)),
            (4, Field::Bytes(s)) => value = Some(Attribute::Bytes(s.to_vec())),
            (5, Field::Bytes(t)) => value = Some(Attribute::Tensor(tensor(t)?.1)),
            (7, v) => {
                push_fixed(&mut floats, v)?;
                list = true;
            }
            (8, v) => {
                push_ints(&mut ints, v)?;
                list = true;
            }
            _ => {}
        }
    }
    let value = match value {
        Some(v) => v,
        None if !floats.is_empty() => Attribute::Floats(floats.iter().map(|b| f32::from_le_bytes(*b)).collect()),
        None if list || !ints.is_empty() => Attribute::Ints(ints),
        None => Attribute::Ints(Vec::new()),
    };
    Ok((name, value))
}

fn node(b: &[u8]) -> std::result::Result<OnnxNode, String> {
    let mut r = Reader::new(b);
    let mut n = OnnxNode::default();
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (1, Field::Bytes(s)) => n.inputs.push(text(s)?),
            (2, Field::Bytes(s)) => n.outputs.push(text(s)?),
            (3, Field::Bytes(s)) => n.name = text(s)?,
            (4, Field::Bytes(s)) => n.op_type = text(s)?,
            (5, Field::Bytes(a)) => {
                let (k, v) = attribute(a)?;
                n.attributes.insert(k, v);
            }
            (7, Field::Bytes(s)) => n.domain = text(s)?,
            _ => {}
        }
    }
    Ok(n)
}

/// A ValueInfoProto: its name and tensor dimensions.
fn value_info(b: &[u8]) -> std::result::Result<(String, Vec<Option<u64>>), String> {
    let mut r = Reader::new(b);
    let (mut name, mut dims) = (String::new(), Vec::new());
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (1, Field::Bytes(s)) => name = text(s)?,
            (2, Field::Bytes(t)) => {
                // TypeProto.tensor_type (1) → TensorShapeProto shape (2) → dim (1) → dim_value (1).
                let mut tr = Reader::new(t);
                while let Some((1, Field::Bytes(tt))) = tr.next()? {
                    let mut ttr = Reader::new(tt);
                    while let Some((f, v)) = ttr.next()? {
                        if let (2, Field::Bytes(shape)) = (f, v) {
                            let mut sr = Reader::new(shape);
                            while let Some((1, Field::Bytes(dim))) = sr.next()? {
                                let mut dr = Reader::new(dim);
                                let mut value = None;
                                while let Some((f, v)) = dr.next()? {
                                    if let (1, Field::Varint(d)) = (f, v) {
                                        value = Some(d);
                                    }
                                }
                                dims.push(value);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok((name, dims))
}

fn graph(b: &[u8], m: &mut OnnxModel) -> std::result::Result<(), String> {
    let mut r = Reader::new(b);
    let mut inputs = Vec::new();
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (1, Field::Bytes(n)) => m.nodes.push(node(n)?),
            (5, Field::Bytes(t)) => {
                let (name, a) = tensor(t)?;
                m.initializers.insert(name, a);
            }
            (11, Field::Bytes(i)) => inputs.push(value_info(i)?),
            (12, Field::Bytes(o)) => m.outputs.push(value_info(o)?.0),
            _ => {}
        }
    }
    // Older exporters list the initializers among the inputs too.
    m.inputs = inputs.into_iter().filter(|(n, _)| !m.initializers.contains_key(n)).collect();
    Ok(())
}

/// Parse an ONNX model from its bytes (`what` names it in messages).
pub fn parse_onnx(bytes: &[u8]) -> std::result::Result<OnnxModel, String> {
    let mut r = Reader::new(bytes);
    let mut m = OnnxModel::default();
    let (mut producer, mut version, mut has_graph) = (String::new(), String::new(), false);
    while let Some((field, v)) = r.next()? {
        match (field, v) {
            (2, Field::Bytes(s)) => producer = text(s)?,
            (3, Field::Bytes(s)) => version = text(s)?,
            (7, Field::Bytes(g)) => {
                graph(g, &mut m)?;
                has_graph = true;
            }
            (8, Field::Bytes(o)) => {
                let (mut domain, mut ver) = (String::new(), None);
                let mut or = Reader::new(o);
                while let Some((f, v)) = or.next()? {
                    match (f, v) {
                        (1, Field::Bytes(d)) => domain = text(d)?,
                        (2, Field::Varint(x)) => ver = Some(x as i64),
                        _ => {}
                    }
                }
                if domain.is_empty() || domain == "ai.onnx" {
                    m.opset = ver;
                }
            }
            _ => {}
        }
    }
    if !has_graph {
        return Err("no graph: not an ONNX model (torch.onnx.export writes one)".into());
    }
    m.producer = format!("{producer} {version}").trim().to_string();
    Ok(m)
}

/// Read and parse the ONNX model at `path`.
pub fn read_onnx(path: &str) -> Result<OnnxModel> {
    // The file, then its weights widened to f64 (at most 8 bytes per byte of int8 data).
    let bytes = read_file(path, "ONNX model", 3)?;
    parse_onnx(&bytes).map_err(|message| DataError::Malformed { format: "ONNX model", path: path.to_string(), message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    fn bytes_field(f: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(f << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend(b);
    }

    #[test]
    fn a_hand_written_model_reads_back() {
        let mut t = Vec::new();
        varint(1 << 3, &mut t); // dims 2
        varint(2, &mut t);
        varint(1 << 3, &mut t); // dims 3
        varint(3, &mut t);
        varint(2 << 3, &mut t); // float32
        varint(1, &mut t);
        bytes_field(8, b"w", &mut t);
        let raw: Vec<u8> = [1.5f32, -2.0, 0.25, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes_field(9, &raw, &mut t);
        let mut n = Vec::new();
        bytes_field(1, b"x", &mut n);
        bytes_field(1, b"w", &mut n);
        bytes_field(2, b"y", &mut n);
        bytes_field(4, b"Gemm", &mut n);
        let mut a = Vec::new();
        bytes_field(1, b"transB", &mut a);
        varint(3 << 3, &mut a);
        varint(1, &mut a);
        bytes_field(5, &a, &mut n);
        let mut g = Vec::new();
        bytes_field(1, &n, &mut g);
        bytes_field(5, &t, &mut g);
        let mut m = Vec::new();
        bytes_field(7, &g, &mut m);
        let model = parse_onnx(&m).unwrap();
        assert_eq!(model.nodes[0].op_type, "Gemm");
        assert_eq!(model.nodes[0].inputs, ["x", "w"]);
        assert_eq!(model.nodes[0].attributes["transB"], Attribute::Int(1));
        assert_eq!(model.initializers["w"].shape, [2, 3]);
        assert_eq!(model.initializers["w"].values, [1.5, -2.0, 0.25, 4.0, 5.0, 6.0]);
        // Truncations are errors, never panics.
        for cut in 0..m.len() {
            let _ = parse_onnx(&m[..cut]);
        }
        assert!(parse_onnx(&m[..m.len() - 3]).unwrap_err().contains("past the end"));
        assert!(parse_onnx(b"").unwrap_err().contains("no graph"));
    }
}
