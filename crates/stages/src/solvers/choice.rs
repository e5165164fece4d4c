//! `solver = "lanczos"` or `solver = { lanczos = { k = 20, tol = 1e-10 } }`: the solver by name
//! (its settings from the stage's flat keys, as every pipeline before the tagged form wrote
//! them) or tagged with its own settings, whose names are the solver's `Params` fields and which
//! refuse keys another solver would take.
use hesslab_eigen::Which;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Which eigensolver.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Solver {
    /// The two-stage dense self-adjoint eigensolver: every eigenvalue.
    Dense,
    /// Thick-restart Lanczos: k extreme eigenpairs, matrix-free.
    Lanczos,
    /// Power iteration with deflation (PyHessian's method): k largest-magnitude eigenpairs.
    Power,
}

/// The `solver` key: a name, or one solver tagged with its settings.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SolverChoice {
    /// `"dense"`, `"lanczos"` or `"power"`; settings from the stage's flat keys.
    Name(Solver),
    /// `{ lanczos = { … } }`, `{ dense = { … } }` or `{ power = { … } }`.
    Tagged(TaggedSolver),
}

/// One solver with its own settings; a setting left out takes the stage's flat key (and so its
/// default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TaggedSolver {
    /// Dense: every eigenvalue, or with `partial` only the k that `which` selects.
    Dense(DenseSettings),
    /// Thick-restart Lanczos.
    Lanczos(LanczosSettings),
    /// Power iteration with deflation.
    Power(PowerSettings),
}

/// `solver = { dense = { … } }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DenseSettings {
    /// Only the k eigenvalues `which` selects, by bisection on the tridiagonal matrix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<bool>,
    /// How many eigenvalues with `partial`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// largest, smallest or magnitude (with `partial`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub which: Option<Which>,
}

/// `solver = { lanczos = { … } }`: the fields of `hesslab_eigen::LanczosParams`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LanczosSettings {
    /// Number of eigenpairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// largest, smallest or magnitude.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub which: Option<Which>,
    /// Convergence: ‖Av − λv‖ ≤ tol · max|θ| for every wanted pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tol: Option<f64>,
    /// Restarts before giving up (the flat key `max_iter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<usize>,
    /// Krylov subspace size (0 = automatic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_dim: Option<usize>,
    /// Wall-clock cap in seconds, after which it stops with an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<f64>,
}

/// `solver = { power = { … } }`: the fields of `hesslab_eigen::PowerParams`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerSettings {
    /// Number of eigenpairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Relative change of the eigenvalue estimate at which an eigenvalue counts as converged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tol: Option<f64>,
    /// Iterations per eigenvalue before giving up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_iter: Option<usize>,
}

impl Default for SolverChoice {
    fn default() -> Self {
        SolverChoice::Name(Solver::Dense)
    }
}

impl From<Solver> for SolverChoice {
    fn from(s: Solver) -> Self {
        SolverChoice::Name(s)
    }
}

impl SolverChoice {
    /// The solver, whichever form named it.
    pub fn solver(&self) -> Solver {
        match self {
            SolverChoice::Name(s) => *s,
            SolverChoice::Tagged(TaggedSolver::Dense(_)) => Solver::Dense,
            SolverChoice::Tagged(TaggedSolver::Lanczos(_)) => Solver::Lanczos,
            SolverChoice::Tagged(TaggedSolver::Power(_)) => Solver::Power,
        }
    }
}

// By hand, not `untagged`: serde's untagged enums answer every mistake with "did not match any
// variant"; this says what was wrong inside the table (an unknown key names the solver's keys).
impl<'de> Deserialize<'de> for SolverChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SolverChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#""dense", "lanczos", "power", or one of them with its settings, e.g. { lanczos = { k = 20, tol = 1e-10 } }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SolverChoice, E> {
                Solver::deserialize(serde::de::value::StrDeserializer::<E>::new(v)).map(SolverChoice::Name)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<SolverChoice, A::Error> {
                TaggedSolver::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(SolverChoice::Tagged)
            }
        }
        d.deserialize_any(Visitor)
    }
}
