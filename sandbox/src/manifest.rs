//! The model manifest: what a model reads and what it outputs, hashed with the module.
//!
//! It owns parsing and validating the manifest and computing the [`ModelDigest`] that a
//! review approval binds to. It must not check the manifest against a dataset or an
//! authorisation: that is the gateway's and the policy gate's job.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::abi::ABI_VERSION;
use crate::error::SandboxError;

/// Most input columns a manifest may declare.
pub const MAX_INPUTS: usize = 64;
/// Most outputs a manifest may declare.
pub const MAX_OUTPUTS: usize = 32;
/// Most bins a histogram may declare.
pub const MAX_BINS: usize = 1_000;
/// Most candidates a quantile may choose among, and the default.
pub const MAX_CANDIDATES: usize = 10_000;
pub const DEFAULT_CANDIDATES: usize = 100;
/// The largest magnitude a clamp bound may have. Larger bounds make sums overflow to
/// infinity inside the release, so a model declaring them could never release.
pub const MAX_ABS_BOUND: f64 = 1e12;

/// The declared type of an input column, as the guest receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// 8-byte IEEE float.
    F64,
    /// 8-byte signed integer.
    I64,
    /// A category code (i64) indexing the column's declared domain.
    Category,
    /// 0 or 1, as an i64.
    Bool,
    /// A calendar date, as an i64 count of days since 1970-01-01.
    Date,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::F64 => "f64",
            ColumnType::I64 => "i64",
            ColumnType::Category => "category",
            ColumnType::Bool => "bool",
            ColumnType::Date => "date",
        }
    }
}

/// How the host aggregates one output's per-row values before adding noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Per-row value is clamped to [0, 1] and rounded to 0 or 1; the release is a noisy
    /// count of rows (opendp's discrete Laplace).
    Count,
    /// Per-row value is clamped to [lower, upper]; the release is a noisy sum.
    Sum,
    /// Per-row value is clamped to [lower, upper]; the release is a noisy mean.
    Mean,
    /// Per-row value is a bin index into the declared `bins`; the release is a noisy count
    /// per bin (rows whose value is not a bin index are counted in no bin).
    Histogram,
    /// Per-row value is clamped to [lower, upper]; the release is the `alpha`-quantile,
    /// chosen privately among `candidates` evenly spaced values.
    Quantile,
}

/// The noise of a count, sum or mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseKind {
    /// Laplace noise, pure ε-DP.
    #[default]
    Laplace,
    /// Gaussian noise under zero-concentrated DP, charged as the (ε, δ) it implies.
    Gaussian,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub kind: OutputKind,
    /// Lower clamp bound of a per-row value (`count` uses 0).
    #[serde(default)]
    pub lower: Option<f64>,
    /// Upper clamp bound of a per-row value (`count` uses 1).
    #[serde(default)]
    pub upper: Option<f64>,
    /// The share of the run's privacy loss this output spends.
    pub epsilon: f64,
    /// The public domain of a histogram: one label per bin. Never taken from the data.
    #[serde(default)]
    pub bins: Vec<String>,
    /// Laplace (default) or Gaussian noise, for count, sum and mean outputs.
    #[serde(default)]
    pub noise: NoiseKind,
    /// The quantile a `quantile` output releases, in [0, 1] (0.5 is the median).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// How many evenly spaced candidate values a `quantile` output chooses among.
    #[serde(default)]
    pub candidates: Option<usize>,
    /// The value a row contributes when the model fails on it (trap, fuel, stack, a
    /// non-finite output); the output's lower bound (bin 0 for a histogram) by default.
    #[serde(default)]
    pub default: Option<f64>,
}

impl OutputSpec {
    /// The clamp bounds of this output's per-row values.
    pub fn bounds(&self) -> (f64, f64) {
        match self.kind {
            OutputKind::Count => (0.0, 1.0),
            OutputKind::Histogram => (0.0, self.bins.len().saturating_sub(1) as f64),
            OutputKind::Sum | OutputKind::Mean | OutputKind::Quantile => {
                (self.lower.unwrap_or(f64::NAN), self.upper.unwrap_or(f64::NAN))
            }
        }
    }

    /// What a row the model failed on contributes to this output.
    pub fn fallback_value(&self) -> f64 {
        self.default.unwrap_or_else(|| self.bounds().0)
    }
}

/// A validated manifest. Construct with [`Manifest::from_toml`]; the source text is kept
/// because the digest covers the exact bytes that were reviewed.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    source: String,
    parsed: ManifestFile,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    abi_version: u32,
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    inputs: Vec<InputColumn>,
    outputs: Vec<OutputSpec>,
    /// A category input whose declared domain partitions count, sum and mean outputs.
    #[serde(default)]
    group_by: Option<String>,
    /// Fuel one row may use (about one unit per instruction); a row past it contributes
    /// its outputs' defaults. The host's own cap applies when it is lower or absent.
    #[serde(default)]
    fuel_per_row: Option<u64>,
}

impl Manifest {
    pub fn from_toml(source: &str) -> Result<Self, SandboxError> {
        let parsed: ManifestFile =
            toml::from_str(source).map_err(|error| SandboxError::ManifestInvalid(error.message().to_owned()))?;
        validate(&parsed).map_err(SandboxError::ManifestInvalid)?;
        Ok(Self { source: source.to_owned(), parsed })
    }

    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn name(&self) -> &str {
        &self.parsed.name
    }
    pub fn version(&self) -> &str {
        &self.parsed.version
    }
    pub fn description(&self) -> &str {
        &self.parsed.description
    }
    pub fn inputs(&self) -> &[InputColumn] {
        &self.parsed.inputs
    }
    /// The index (among the inputs) of the group-by column, if the manifest declares one.
    pub fn group_by(&self) -> Option<usize> {
        let name = self.parsed.group_by.as_ref()?;
        self.parsed.inputs.iter().position(|input| &input.name == name)
    }

    pub fn outputs(&self) -> &[OutputSpec] {
        &self.parsed.outputs
    }
    /// The fuel one row may use, if the manifest declares it.
    pub fn fuel_per_row(&self) -> Option<u64> {
        self.parsed.fuel_per_row
    }

    /// The privacy loss one run of this model spends: the sum of its outputs' shares.
    pub fn epsilon_per_run(&self) -> f64 {
        self.parsed.outputs.iter().map(|output| output.epsilon).sum()
    }
}

fn validate(manifest: &ManifestFile) -> Result<(), String> {
    if manifest.abi_version == 1 {
        return Err(format!(
            "abi_version 1 is retired: ABI 1 let a model keep state across rows; rebuild the model with \
             the sluice-guest SDK for ABI {ABI_VERSION} (a pure row function) and declare abi_version = {ABI_VERSION}"
        ));
    }
    if manifest.abi_version != ABI_VERSION {
        return Err(format!(
            "abi_version {} is not supported (this host implements {ABI_VERSION})",
            manifest.abi_version
        ));
    }
    if manifest.fuel_per_row == Some(0) {
        return Err("fuel_per_row must be above 0".into());
    }
    check_name("model name", &manifest.name)?;
    if manifest.version.trim().is_empty() {
        return Err("version must not be empty".into());
    }
    if manifest.inputs.len() > MAX_INPUTS {
        return Err(format!("{} inputs declared, at most {MAX_INPUTS}", manifest.inputs.len()));
    }
    if manifest.outputs.is_empty() || manifest.outputs.len() > MAX_OUTPUTS {
        return Err(format!("{} outputs declared, need 1 to {MAX_OUTPUTS}", manifest.outputs.len()));
    }
    let mut seen = HashSet::new();
    for input in &manifest.inputs {
        check_identifier("input name", &input.name)?;
        if !seen.insert(input.name.as_str()) {
            return Err(format!("input `{}` is declared twice", input.name));
        }
    }
    if let Some(group_by) = &manifest.group_by {
        let input = manifest.inputs.iter().find(|input| &input.name == group_by);
        if input.is_none_or(|input| input.column_type != ColumnType::Category) {
            return Err(format!(
                "group_by `{group_by}` must name a category input, whose declared domain gives the groups"
            ));
        }
    }
    if manifest.group_by.is_some() && manifest.outputs.iter().any(|output| output.noise == NoiseKind::Gaussian) {
        return Err("grouped outputs use Laplace noise; remove `noise = \"gaussian\"` or `group_by`".into());
    }
    let mut seen = HashSet::new();
    for output in &manifest.outputs {
        check_output(output)?;
        if !seen.insert(output.name.as_str()) {
            return Err(format!("output `{}` is declared twice", output.name));
        }
    }
    Ok(())
}

fn check_output(output: &OutputSpec) -> Result<(), String> {
    check_identifier("output name", &output.name)?;
    let name = &output.name;
    if !(output.epsilon.is_finite() && output.epsilon > 0.0) {
        return Err(format!("output `{name}`: epsilon must be a finite number above 0"));
    }
    if (output.kind == OutputKind::Histogram) == output.bins.is_empty() {
        return Err(format!("output `{name}`: a histogram, and only a histogram, declares bins"));
    }
    if output.noise == NoiseKind::Gaussian
        && !matches!(output.kind, OutputKind::Count | OutputKind::Sum | OutputKind::Mean)
    {
        return Err(format!("output `{name}`: Gaussian noise is for count, sum and mean outputs"));
    }
    if (output.kind == OutputKind::Quantile) != output.alpha.is_some()
        || (output.kind != OutputKind::Quantile && output.candidates.is_some())
    {
        return Err(format!("output `{name}`: a quantile, and only a quantile, declares alpha (and candidates)"));
    }
    match output.kind {
        OutputKind::Quantile => {
            let alpha = output.alpha.unwrap_or(f64::NAN);
            if !(0.0..=1.0).contains(&alpha) {
                return Err(format!("output `{name}`: alpha must be in [0, 1]"));
            }
            if !(2..=MAX_CANDIDATES).contains(&output.candidates.unwrap_or(DEFAULT_CANDIDATES)) {
                return Err(format!("output `{name}`: a quantile needs 2 to {MAX_CANDIDATES} candidates"));
            }
            check_bounds(name, output)?;
        }
        OutputKind::Histogram => {
            if output.lower.is_some() || output.upper.is_some() {
                return Err(format!("output `{name}`: a histogram's bins are its bounds; remove lower/upper"));
            }
            if !(2..=MAX_BINS).contains(&output.bins.len()) {
                return Err(format!("output `{name}`: a histogram needs 2 to {MAX_BINS} bins"));
            }
            let distinct: HashSet<&String> = output.bins.iter().collect();
            if distinct.len() != output.bins.len() || output.bins.iter().any(|bin| bin.trim().is_empty()) {
                return Err(format!("output `{name}`: bin labels must be distinct and not empty"));
            }
        }
        OutputKind::Count => {
            if output.lower.is_some() || output.upper.is_some() {
                return Err(format!("output `{name}`: a count has fixed bounds [0, 1]; remove lower/upper"));
            }
        }
        OutputKind::Sum | OutputKind::Mean => check_bounds(name, output)?,
    }
    if let Some(default) = output.default {
        let (lower, upper) = output.bounds();
        let whole_bin = output.kind != OutputKind::Histogram || default.fract() == 0.0;
        if !(default.is_finite() && lower <= default && default <= upper && whole_bin) {
            return Err(format!(
                "output `{name}`: default must lie within the output's bounds (a bin index for a histogram)"
            ));
        }
    }
    Ok(())
}

fn check_bounds(name: &str, output: &OutputSpec) -> Result<(), String> {
    let (Some(lower), Some(upper)) = (output.lower, output.upper) else {
        return Err(format!("output `{name}`: a sum, mean or quantile needs lower and upper bounds"));
    };
    if !(lower.is_finite() && upper.is_finite() && lower < upper) {
        return Err(format!("output `{name}`: bounds must be finite with lower < upper"));
    }
    if lower.abs() > MAX_ABS_BOUND || upper.abs() > MAX_ABS_BOUND {
        return Err(format!("output `{name}`: bounds must lie within ±{MAX_ABS_BOUND:e}"));
    }
    Ok(())
}

/// Whether `name` may name a manifest input or output: input and output names become Rust
/// identifiers in the SDK and parts of the row export's name, so they are lower-case
/// identifiers of at most 64 characters.
pub fn is_input_or_output_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
        && !name.starts_with(|character: char| character.is_ascii_digit())
}

fn check_identifier(what: &str, name: &str) -> Result<(), String> {
    if is_input_or_output_name(name) {
        Ok(())
    } else {
        Err(format!("{what} `{name}` must be 1 to 64 characters of a-z, 0-9 or `_`, not starting with a digit"))
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    let well_formed = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'-');
    if well_formed {
        Ok(())
    } else {
        Err(format!("{what} `{name}` must be 1 to 64 characters of a-z, 0-9, `_` or `-`"))
    }
}

/// The blake3 digest of a module and its manifest together. A review approval binds to
/// it, so changing one byte of either makes a different model that needs a new review.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelDigest([u8; 32]);

impl ModelDigest {
    pub fn of(module: &[u8], manifest: &Manifest) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key("sluice 2026 model digest v1");
        // Length prefixes keep (module, manifest) pairs unambiguous.
        hasher.update(&(module.len() as u64).to_le_bytes());
        hasher.update(module);
        let manifest = manifest.source().as_bytes();
        hasher.update(&(manifest.len() as u64).to_le_bytes());
        hasher.update(manifest);
        Self(*hasher.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ModelDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ModelDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelDigest({self})")
    }
}

impl FromStr for ModelDigest {
    type Err = SandboxError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || SandboxError::DigestInvalid(text.chars().take(80).collect());
        if text.len() != 64 || !text.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|_| invalid())?;
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
abi_version = 2
name = "m"
version = "1"
inputs = [{ name = "a", type = "f64" }]
outputs = [{ name = "c", kind = "count", epsilon = 0.5 }, { name = "s", kind = "sum", lower = 0.0, upper = 2.0, epsilon = 0.25 }]
"#;

    fn check(source: &str, expected_error: Option<&str>) {
        match (Manifest::from_toml(source), expected_error) {
            (Ok(_), None) => {}
            (Err(error), Some(expected)) => assert!(error.to_string().contains(expected), "{error}"),
            (outcome, expected) => panic!("expected {expected:?}, got {outcome:?}"),
        }
    }

    #[test]
    fn manifests_are_validated() {
        check(GOOD, None);
        check(&GOOD.replace("abi_version = 2", "abi_version = 3"), Some("abi_version 3"));
        check(&GOOD.replace("abi_version = 2", "abi_version = 1"), Some("abi_version 1 is retired"));
        check(&GOOD.replace("upper = 2.0", "upper = 1e307"), Some("within ±"));
        check(&GOOD.replace("upper = 2.0", "upper = 2.0, default = 1.0"), None);
        check(&GOOD.replace("upper = 2.0", "upper = 2.0, default = 3.0"), Some("default must lie"));
        check(&format!("fuel_per_row = 0\n{GOOD}"), Some("fuel_per_row must be above 0"));
        check(&GOOD.replace("name = \"a\"", "name = \"a-b\""), Some("not starting with a digit"));
        check(&GOOD.replace("epsilon = 0.5", "epsilon = -1.0"), Some("epsilon must be"));
        check(&GOOD.replace("epsilon = 0.5", "epsilon = nan"), Some("epsilon must be"));
        check(&GOOD.replace("lower = 0.0", "lower = 3.0"), Some("lower < upper"));
        check(&GOOD.replace("upper = 2.0", "upper = inf"), Some("finite"));
        check(&GOOD.replace("lower = 0.0, ", ""), Some("needs lower and upper"));
        let median = GOOD.replace("kind = \"sum\"", "kind = \"quantile\", alpha = 0.5");
        check(&median, None);
        check(&median.replace("alpha = 0.5", "alpha = 1.5"), Some("alpha must be in [0, 1]"));
        check(&median.replace("alpha = 0.5", "alpha = 0.5, candidates = 1"), Some("2 to 10000 candidates"));
        check(&GOOD.replace("kind = \"sum\"", "kind = \"quantile\""), Some("only a quantile"));
        check(&GOOD.replace("kind = \"sum\"", "kind = \"sum\", noise = \"gaussian\""), None);
        check(&median.replace("alpha = 0.5", "alpha = 0.5, noise = \"gaussian\""), Some("Gaussian noise is for"));
        check(&GOOD.replace("name = \"s\"", "name = \"c\""), Some("declared twice"));
        check(&GOOD.replace("name = \"a\"", "name = \"A b\""), Some("must be 1 to 64"));
        check(&GOOD.replace("name = \"a\"", "name = \"1a\""), Some("not starting with a digit"));
        check(&GOOD.replace("type = \"f64\"", "type = \"string\""), Some("unknown variant"));
        check(&format!("{GOOD}\nextra = 1"), Some("unknown field"));
        let histogram = GOOD.replace("kind = \"count\"", "kind = \"histogram\", bins = [\"a\", \"b\"]");
        check(&histogram, None);
        check(&histogram.replace("[\"a\", \"b\"]", "[\"a\"]"), Some("2 to 1000 bins"));
        check(&histogram.replace("[\"a\", \"b\"]", "[\"a\", \"a\"]"), Some("distinct"));
        check(&GOOD.replace("kind = \"count\"", "kind = \"histogram\""), Some("only a histogram, declares bins"));
        check(&GOOD.replace("kind = \"count\"", "kind = \"count\", bins = [\"a\", \"b\"]"), Some("only a histogram"));
        check(&format!("group_by = \"a\"\n{GOOD}"), Some("must name a category input"));
        check(
            &format!(
                "group_by = \"g\"\n{}",
                GOOD.replace(
                    "[{ name = \"a\", type = \"f64\" }]",
                    "[{ name = \"a\", type = \"f64\" }, { name = \"g\", type = \"category\" }]"
                )
            ),
            None,
        );
    }

    #[test]
    fn digest_changes_with_any_byte_and_round_trips() {
        let manifest = Manifest::from_toml(GOOD).expect("valid");
        let digest = ModelDigest::of(b"module", &manifest);
        assert_ne!(digest, ModelDigest::of(b"modulf", &manifest));
        let other = Manifest::from_toml(&GOOD.replace("0.25", "0.26")).expect("valid");
        assert_ne!(digest, ModelDigest::of(b"module", &other));
        assert_eq!(digest.to_string().parse::<ModelDigest>().expect("parses"), digest);
        assert!("zz".parse::<ModelDigest>().is_err());
        assert!("é".repeat(32).parse::<ModelDigest>().is_err());
        assert_eq!(manifest.epsilon_per_run(), 0.75);
    }
}
