//! What `init_ensemble` writes: the top eigenvalues of many independently drawn networks.
use crate::Meta;
use arrow_array::RecordBatch;
use arrow_schema::Schema;
use hesslab_pipeline::columns::*;
use hesslab_pipeline::{Artifact, Encoded, MetaKey, Port, StageError};
use std::sync::Arc;

const MEMBER: &str = "member";
const RANK: &str = "rank";
const EIGENVALUE: &str = "eigenvalue";
const LOSS: &str = "loss";
const OPERATOR: MetaKey = MetaKey { key: "operator", doc: "the operator (hessian, gauss_newton, …)" };
const DIM: MetaKey = MetaKey { key: "dim", doc: "its side P" };
const DRAW: MetaKey = MetaKey {
    key: "draw",
    doc: "JSON: how each member's parameters were drawn (init, init_radius, init_std, members, steps, lr); member i is seeded by the stage seed and \"member i\"",
};

/// One member of an ensemble: its top eigenvalues (descending) and its loss.
#[derive(Debug, Clone, PartialEq)]
pub struct EnsembleMember {
    /// The largest eigenvalues, descending.
    pub top: Vec<f64>,
    /// The loss at the member's parameters.
    pub loss: f64,
}

/// Top eigenvalues of an ensemble of parameter draws: the `ensemble` port.
#[derive(Debug, Clone, PartialEq)]
pub struct Ensemble {
    /// The members in draw order.
    pub members: Vec<EnsembleMember>,
    /// The operator.
    pub operator: String,
    /// Its side P.
    pub dim: usize,
    /// How the parameters were drawn (JSON).
    pub draw: String,
}

impl Port for Ensemble {
    type Value = Self;
    const NAME: &'static str = "ensemble";
    const DOC: &'static str =
        "member UInt32 (draw index), rank UInt32 (0 = largest), eigenvalue Float64, loss Float64 (the member's loss, repeated on its rows)";
    const METADATA: &'static [MetaKey] = &[OPERATOR, DIM, DRAW];
    fn schema() -> Schema {
        Schema::new(vec![u32_field(MEMBER), u32_field(RANK), f64_field(EIGENVALUE), f64_field(LOSS)])
    }
    fn encode(v: &Self) -> Result<Encoded<'_>, StageError> {
        let rows =
            v.members.iter().enumerate().flat_map(|(i, m)| m.top.iter().enumerate().map(move |(r, &e)| (i as u32, r as u32, e, m.loss)));
        let rows: Vec<_> = rows.collect();
        let cols = vec![
            u32_array(rows.iter().map(|r| r.0)),
            u32_array(rows.iter().map(|r| r.1)),
            f64_array(rows.iter().map(|r| r.2)),
            f64_array(rows.iter().map(|r| r.3)),
        ];
        let mut m = Meta::new();
        m.put(OPERATOR, &v.operator);
        m.put(DIM, v.dim);
        m.put(DRAW, &v.draw);
        Ok(Encoded::one(RecordBatch::try_new(Arc::new(Self::schema()), cols).map_err(StageError::other)?, m.0))
    }
    fn decode(a: &Artifact) -> Result<Self, StageError> {
        let err = |m: String| StageError::from(a.column_error(m));
        let (member, rank) = (u32_values(&a.batch, MEMBER).map_err(err)?, u32_values(&a.batch, RANK).map_err(err)?);
        let (ev, loss) = (f64_values(&a.batch, EIGENVALUE).map_err(err)?, f64_values(&a.batch, LOSS).map_err(err)?);
        let mut members: Vec<EnsembleMember> = Vec::new();
        for i in 0..member.len() {
            let m = member[i] as usize;
            if m == members.len() {
                members.push(EnsembleMember { top: Vec::new(), loss: loss[i] });
            }
            if m + 1 != members.len() || rank[i] as usize != members[m].top.len() {
                return Err(err(format!("row {i}: members and ranks must be in order (member {m}, rank {})", rank[i])));
            }
            members[m].top.push(ev[i]);
        }
        Ok(Ensemble {
            members,
            operator: a.meta(OPERATOR.key).unwrap_or("").to_string(),
            dim: a.meta(DIM.key).and_then(|d| d.parse().ok()).unwrap_or(0),
            draw: a.meta(DRAW.key).unwrap_or("").to_string(),
        })
    }
}
