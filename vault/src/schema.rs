//! Dataset schemas: columns, types, bounds, domains and classification levels (分级分类).
//!
//! It owns parsing and validating a schema file and parsing one CSV field by its column's
//! rules. It must not store or encrypt anything. Error messages may name a column and a
//! line, never the offending value: a value from a dataset is data.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sluice_sandbox::ColumnType;

use crate::pseudonym::KeyFormat;

/// 1970-01-01 as a Julian day: dates are stored as days since then.
const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// Level 4 ("core") columns can never be granted to a scenario.
pub const MAX_GRANTABLE_LEVEL: u8 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    /// 1 public, 2 internal, 3 sensitive, 4 core (never grantable).
    pub classification: u8,
    #[serde(default)]
    pub nullable: bool,
    /// Inclusive bounds of a numeric column; for a `date` column, in days since 1970-01-01.
    #[serde(default)]
    pub lower: Option<f64>,
    #[serde(default)]
    pub upper: Option<f64>,
    /// The declared domain of a category column; codes are indexes into it.
    #[serde(default)]
    pub domain: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// Only on the person (or enterprise) id column: its CSV field is a text identifier of
    /// this format, stored as its keyed pseudonym ([`crate::pseudonym`]), never as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonym_of: Option<KeyFormat>,
}

/// A validated schema; `source` is kept because the schema hash covers its exact text.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSchema {
    pub source: String,
    pub name: String,
    pub description: String,
    pub columns: Vec<ColumnSchema>,
    pub privacy_unit: PrivacyUnit,
}

/// What differential privacy protects: one row, or all the rows of one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivacyUnit {
    /// Each row is a different person.
    RowPerPerson,
    /// Rows carry a person id (a level-4 `i64` column); ingest keeps at most `max_rows`
    /// rows per person, and releases are calibrated to changing all of one person's rows.
    PersonId { column: String, max_rows: u32 },
}

impl DatasetSchema {
    /// The most rows one person contributes: what the noise is calibrated to.
    pub fn rows_per_person(&self) -> u32 {
        match self.privacy_unit {
            PrivacyUnit::RowPerPerson => 1,
            PrivacyUnit::PersonId { max_rows, .. } => max_rows,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    name: String,
    #[serde(default)]
    description: String,
    /// `"row_per_person"`, or `{ person_id = "column", max_rows_per_person = N }`.
    privacy_unit: PrivacyUnitFile,
    columns: Vec<ColumnSchema>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PrivacyUnitFile {
    Named(String),
    PersonId { person_id: String, max_rows_per_person: u32 },
}

fn privacy_unit(file: &SchemaFile) -> Result<PrivacyUnit, String> {
    match &file.privacy_unit {
        PrivacyUnitFile::Named(name) if name == "row_per_person" => Ok(PrivacyUnit::RowPerPerson),
        PrivacyUnitFile::Named(name) => {
            Err(format!("privacy_unit `{name}` is not `row_per_person` or {{ person_id, max_rows_per_person }}"))
        }
        PrivacyUnitFile::PersonId { person_id, max_rows_per_person } => {
            let column = file.columns.iter().find(|column| &column.name == person_id);
            let Some(column) = column else {
                return Err(format!("privacy_unit names person_id column `{person_id}`, which is not declared"));
            };
            if column.column_type != ColumnType::I64 || column.nullable || column.classification != 4 {
                return Err(format!(
                    "person_id column `{person_id}` must be a non-nullable i64 of classification 4 (never granted)"
                ));
            }
            if column.pseudonym_of.is_some() && (column.lower.is_some() || column.upper.is_some()) {
                return Err(format!("person_id column `{person_id}` holds pseudonyms: it takes no bounds"));
            }
            if !(1..=1000).contains(max_rows_per_person) {
                return Err("max_rows_per_person must be 1 to 1000".into());
            }
            Ok(PrivacyUnit::PersonId { column: person_id.clone(), max_rows: *max_rows_per_person })
        }
    }
}

impl DatasetSchema {
    pub fn from_toml(source: &str) -> Result<Self, String> {
        let file: SchemaFile = toml::from_str(source).map_err(|error| error.message().to_owned())?;
        if file.columns.is_empty() {
            return Err("a schema needs at least one column".into());
        }
        let mut names = HashSet::new();
        for column in &file.columns {
            validate_column(column)?;
            if !names.insert(column.name.as_str()) {
                return Err(format!("column `{}` is declared twice", column.name));
            }
        }
        let privacy_unit = privacy_unit(&file)?;
        let key = match &privacy_unit {
            PrivacyUnit::PersonId { column, .. } => Some(column.as_str()),
            PrivacyUnit::RowPerPerson => None,
        };
        if let Some(column) =
            file.columns.iter().find(|column| column.pseudonym_of.is_some() && Some(column.name.as_str()) != key)
        {
            return Err(format!(
                "column `{}`: only the privacy unit's person_id column can be a pseudonymised key (pseudonym_of)",
                column.name
            ));
        }
        Ok(Self {
            source: source.to_owned(),
            name: file.name,
            description: file.description,
            columns: file.columns,
            privacy_unit,
        })
    }

    /// blake3 of the exact schema text; bound into every chunk's associated data.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::Hasher::new_derive_key("sluice 2026 dataset schema v1")
            .update(self.source.as_bytes())
            .finalize()
            .as_bytes()
    }

    pub fn column(&self, name: &str) -> Option<(usize, &ColumnSchema)> {
        self.columns.iter().enumerate().find(|(_, column)| column.name == name)
    }

    /// The level-4 column rows are joined on: the person (or enterprise) id, if the schema
    /// declares one.
    pub fn key_column(&self) -> Option<&str> {
        match &self.privacy_unit {
            PrivacyUnit::RowPerPerson => None,
            PrivacyUnit::PersonId { column, .. } => Some(column),
        }
    }

    /// What the key column's CSV field holds when it is a text identifier stored as a
    /// pseudonym; `None` for an `i64` id taken as written (or no key column).
    pub fn key_format(&self) -> Option<KeyFormat> {
        self.key_column().and_then(|key| self.column(key)).and_then(|(_, column)| column.pseudonym_of)
    }

    /// The rows a model over `self` left-joined with every one of `joined` in turn sees (a
    /// scenario over several departments' data): [`DatasetSchema::joined`] applied in order,
    /// so each joined dataset must hold at most one row per key under the same kind of key,
    /// and no column name may be in two of them. With none, this schema.
    pub fn joined_all<'a>(&self, joined: impl IntoIterator<Item = &'a DatasetSchema>) -> Result<DatasetSchema, String> {
        joined.into_iter().try_fold(self.clone(), |view, next| view.joined(next))
    }

    /// The rows a model over `self` left-joined with `joined` on their keys sees, as one
    /// schema: this schema's columns, then the joined one's except its key, made nullable
    /// (a row whose key the joined dataset lacks has nulls there). Its privacy unit is this
    /// one's: the joined dataset holds at most one row per key, so every row here stays one
    /// row and one person contributes at most this schema's rows — the row count and the
    /// contribution bound stay public facts of this dataset alone.
    ///
    /// Refused unless both declare a key column and the joined one at most one row per key,
    /// and no column name is in both (the model reads columns by name).
    pub fn joined(&self, joined: &DatasetSchema) -> Result<DatasetSchema, String> {
        let (Some(_), Some(joined_key)) = (self.key_column(), joined.key_column()) else {
            return Err(format!(
                "datasets `{}` and `{}` are joined on their person or enterprise id: both must declare \
                 privacy_unit = {{ person_id = ..., max_rows_per_person = ... }}",
                self.name, joined.name
            ));
        };
        if self.key_format() != joined.key_format() {
            let describe = |schema: &DatasetSchema| match schema.key_format() {
                Some(format) => format!("`{}` is keyed by pseudonymised {}", schema.name, format.describe()),
                None => format!("`{}` is keyed by integer ids taken as written", schema.name),
            };
            return Err(format!(
                "a join matches equal keys: {} and {}; both must declare the same key (pseudonym_of)",
                describe(self),
                describe(joined)
            ));
        }
        if joined.rows_per_person() != 1 {
            return Err(format!(
                "the joined dataset `{}` may hold {} rows per key; a join adds a dataset with at most one row \
                 per key (max_rows_per_person = 1), so the joined rows are exactly the first dataset's",
                joined.name,
                joined.rows_per_person()
            ));
        }
        let mut columns = self.columns.clone();
        for column in joined.columns.iter().filter(|column| column.name != joined_key) {
            if self.column(&column.name).is_some() {
                return Err(format!(
                    "column `{}` is in both `{}` and `{}`; a model reads columns by name",
                    column.name, self.name, joined.name
                ));
            }
            columns.push(ColumnSchema { nullable: true, ..column.clone() });
        }
        Ok(DatasetSchema {
            source: format!("{}\n# joined with\n{}", self.source, joined.source),
            name: format!("{} ⋈ {}", self.name, joined.name),
            description: format!("{} joined with {} on their ids", self.name, joined.name),
            columns,
            privacy_unit: self.privacy_unit.clone(),
        })
    }
}

fn validate_column(column: &ColumnSchema) -> Result<(), String> {
    let name = &column.name;
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!("column name `{name}` must be 1 to 64 characters of a-z, 0-9 or `_`"));
    }
    if !(1..=4).contains(&column.classification) {
        return Err(format!("column `{name}`: classification must be 1 (public) to 4 (core)"));
    }
    match column.column_type {
        ColumnType::Category => {
            if column.domain.is_empty() || column.domain.len() > 10_000 {
                return Err(format!("column `{name}`: a category needs a domain of 1 to 10,000 values"));
            }
            if column.domain.iter().collect::<HashSet<_>>().len() != column.domain.len() {
                return Err(format!("column `{name}`: the domain lists a value twice"));
            }
        }
        _ if !column.domain.is_empty() => return Err(format!("column `{name}`: only a category has a domain")),
        _ => {}
    }
    if let (Some(lower), Some(upper)) = (column.lower, column.upper)
        && !(lower.is_finite() && upper.is_finite() && lower <= upper)
    {
        return Err(format!("column `{name}`: bounds must be finite with lower <= upper"));
    }
    Ok(())
}

/// One parsed field: the 8-byte value the guest will see, or null.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field {
    Null,
    F64(f64),
    I64(i64),
}

impl ColumnSchema {
    /// Parses one CSV field. The error says what rule failed, not what the value was.
    pub fn parse_field(&self, text: &str) -> Result<Field, String> {
        let text = text.trim();
        if self.pseudonym_of.is_some() {
            // Only the ingest, which holds the deployment's pseudonym secret, can parse it.
            return Err("is a pseudonymised key, parsed only with the pseudonym secret".into());
        }
        if text.is_empty() {
            return if self.nullable { Ok(Field::Null) } else { Err("is empty but the column is not nullable".into()) };
        }
        match self.column_type {
            ColumnType::F64 => {
                let value: f64 = text.parse().map_err(|_| "is not a number".to_owned())?;
                if !value.is_finite() {
                    return Err("is not a finite number".into());
                }
                self.check_bounds(value)?;
                Ok(Field::F64(value))
            }
            ColumnType::I64 => {
                let value: i64 = text.parse().map_err(|_| "is not an integer".to_owned())?;
                self.check_bounds(value as f64)?;
                Ok(Field::I64(value))
            }
            ColumnType::Category => match self.domain.iter().position(|member| member == text) {
                Some(code) => Ok(Field::I64(code as i64)),
                None => Err("is not in the column's declared domain".into()),
            },
            ColumnType::Date => {
                let date = time::Date::parse(text, &time::format_description::well_known::Iso8601::DATE)
                    .map_err(|_| "is not a date (YYYY-MM-DD)".to_owned())?;
                let days = i64::from(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY);
                self.check_bounds(days as f64)?;
                Ok(Field::I64(days))
            }
            ColumnType::Bool => match text {
                "true" | "1" => Ok(Field::I64(1)),
                "false" | "0" => Ok(Field::I64(0)),
                _ => Err("is not a boolean (true, false, 1 or 0)".into()),
            },
        }
    }

    fn check_bounds(&self, value: f64) -> Result<(), String> {
        if self.lower.is_some_and(|lower| value < lower) || self.upper.is_some_and(|upper| value > upper) {
            return Err("is outside the column's declared bounds".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"
name = "t"
privacy_unit = "row_per_person"
[[columns]]
name = "age"
type = "f64"
classification = 2
lower = 0.0
upper = 40.0
[[columns]]
name = "district"
type = "category"
classification = 1
nullable = true
domain = ["a", "b"]
"#;

    #[test]
    fn fields_parse_by_column_rules() {
        let schema = DatasetSchema::from_toml(SCHEMA).expect("valid");
        let age = &schema.columns[0];
        let district = &schema.columns[1];
        assert_eq!(age.parse_field(" 3.5 "), Ok(Field::F64(3.5)));
        assert!(age.parse_field("41").expect_err("out of bounds").contains("bounds"));
        assert!(age.parse_field("NaN").is_err());
        assert!(age.parse_field("").expect_err("not nullable").contains("not nullable"));
        assert_eq!(district.parse_field("b"), Ok(Field::I64(1)));
        assert_eq!(district.parse_field(""), Ok(Field::Null));
        let error = district.parse_field("secret-value").expect_err("not in domain");
        assert!(!error.contains("secret-value"), "errors must not echo data: {error}");

        let date = ColumnSchema {
            name: "d".into(),
            column_type: ColumnType::Date,
            classification: 1,
            nullable: false,
            lower: Some(0.0),
            upper: None,
            domain: Vec::new(),
            description: String::new(),
            pseudonym_of: None,
        };
        assert_eq!(date.parse_field("1970-01-02"), Ok(Field::I64(1)));
        assert_eq!(date.parse_field("2026-11-23"), Ok(Field::I64(20_780)));
        assert!(date.parse_field("1969-12-31").expect_err("before the lower bound").contains("bounds"));
        assert!(date.parse_field("2026-13-01").expect_err("no such month").contains("YYYY-MM-DD"));
    }

    #[test]
    fn schemas_are_validated() {
        let check = |source: &str, expected: &str| {
            let error = DatasetSchema::from_toml(source).expect_err("invalid");
            assert!(error.contains(expected), "{error}");
        };
        check(&SCHEMA.replace("classification = 2", "classification = 5"), "classification must be");
        check(&SCHEMA.replace("domain = [\"a\", \"b\"]", "domain = [\"a\", \"a\"]"), "twice");
        check(&SCHEMA.replace("name = \"district\"", "name = \"age\""), "declared twice");
        check(&SCHEMA.replace("\"row_per_person\"", "\"household\""), "privacy_unit `household`");
        check(
            &SCHEMA.replace("\"row_per_person\"", "{ person_id = \"age\", max_rows_per_person = 3 }"),
            "must be a non-nullable i64 of classification 4",
        );
        check(
            &SCHEMA.replace("\"row_per_person\"", "{ person_id = \"nobody\", max_rows_per_person = 3 }"),
            "not declared",
        );
        check(&SCHEMA.replace("upper = 40.0", "upper = -1.0"), "lower <= upper");
    }

    fn keyed(name: &str, rows: u32, columns: &str) -> DatasetSchema {
        DatasetSchema::from_toml(&format!(
            "name = \"{name}\"\nprivacy_unit = {{ person_id = \"code\", max_rows_per_person = {rows} }}\n\
             [[columns]]\nname = \"code\"\ntype = \"i64\"\nclassification = 4\n{columns}"
        ))
        .expect("valid")
    }

    #[test]
    fn a_join_adds_the_other_columns_but_its_key_made_nullable_and_keeps_the_first_privacy_unit() {
        let tax = keyed("tax", 3, "[[columns]]\nname = \"revenue\"\ntype = \"f64\"\nclassification = 3\n");
        let insured = keyed("insured", 1, "[[columns]]\nname = \"staff\"\ntype = \"i64\"\nclassification = 2\n");
        let joined = tax.joined(&insured).expect("joins");
        let names: Vec<&str> = joined.columns.iter().map(|column| column.name.as_str()).collect();
        assert_eq!(names, ["code", "revenue", "staff"]);
        assert!(joined.column("staff").expect("staff").1.nullable);
        assert!(!joined.column("revenue").expect("revenue").1.nullable);
        assert_eq!(joined.rows_per_person(), 3);
        assert_eq!(joined.key_column(), Some("code"));
        assert_ne!(joined.hash(), tax.hash());

        // The joined side holds more than one row per key: the joined rows' count would
        // depend on it.
        let many = keyed("many", 2, "[[columns]]\nname = \"staff\"\ntype = \"i64\"\nclassification = 2\n");
        assert!(tax.joined(&many).expect_err("two rows a key").contains("at most one row per key"));
        // A name in both would be ambiguous to the model.
        let clash = keyed("clash", 1, "[[columns]]\nname = \"revenue\"\ntype = \"f64\"\nclassification = 3\n");
        assert!(tax.joined(&clash).expect_err("same name").contains("`revenue` is in both"));
        // Without a key on either side there is nothing to join on.
        let unkeyed = DatasetSchema::from_toml(SCHEMA).expect("valid");
        assert!(unkeyed.joined(&insured).expect_err("no key").contains("person_id"));
        assert!(tax.joined(&unkeyed).expect_err("no key").contains("person_id"));
    }

    /// Three departments' schemas (seed 002 item 16) join in turn: the view holds every
    /// non-key column once, nullable past the first, under the first's privacy unit; a
    /// column in two joined datasets, a second row per key or another kind of key in the
    /// third is refused, naming it.
    #[test]
    fn several_departments_schemas_join_in_turn_and_refuse_what_two_would() {
        let read = |source: &str| DatasetSchema::from_toml(source).expect("an example schema");
        let tax = read(include_str!("../../examples/data/enterprise-tax.schema.toml"));
        let insurance = read(include_str!("../../examples/data/social-insurance.schema.toml"));
        let market = read(include_str!("../../examples/data/market-regulation.schema.toml"));
        let view = tax.joined_all([&insurance, &market]).expect("three join");
        assert_eq!(view, tax.joined(&insurance).and_then(|view| view.joined(&market)).expect("in turn"));
        assert_eq!(view.privacy_unit, tax.privacy_unit);
        let names: Vec<&str> = view.columns.iter().map(|column| column.name.as_str()).collect();
        assert_eq!(names.iter().filter(|name| **name == "enterprise_code").count(), 1);
        for name in ["employees", "registered_capital_cny", "abnormal_operations"] {
            assert!(view.column(name).is_some_and(|(_, column)| column.nullable), "{name}");
        }
        assert_eq!(tax.joined_all([]).expect("none"), tax);
        // The market register with a column the insurance bureau already gives.
        let clash = read(
            &include_str!("../../examples/data/market-regulation.schema.toml")
                .replace("name = \"abnormal_operations\"", "name = \"employees\""),
        );
        let error = tax.joined_all([&insurance, &clash]).expect_err("a column twice");
        assert!(error.contains("column `employees` is in both"), "{error}");
        let many = read(
            &include_str!("../../examples/data/market-regulation.schema.toml")
                .replace("max_rows_per_person = 1", "max_rows_per_person = 3"),
        );
        let error = tax.joined_all([&insurance, &many]).expect_err("rows per key");
        assert!(error.contains("zunyi-market-regulation") && error.contains("3 rows per key"), "{error}");
        let integer = read(
            &include_str!("../../examples/data/market-regulation.schema.toml").replace("pseudonym_of = \"uscc\"", ""),
        );
        let error = tax.joined_all([&insurance, &integer]).expect_err("another kind of key");
        assert!(error.contains("pseudonym_of"), "{error}");
    }

    #[test]
    fn a_pseudonymised_key_is_declared_on_the_person_id_alone_and_joins_only_its_own_kind() {
        let key = |format: &str| format!("pseudonym_of = \"{format}\"\n");
        let extra = "[[columns]]\nname = \"staff\"\ntype = \"i64\"\nclassification = 2\n";
        let tax = keyed("tax", 1, &format!("{}{extra}", key("uscc")));
        assert_eq!(tax.key_format(), Some(KeyFormat::Uscc));
        let code = &tax.columns[0];
        assert!(code.parse_field("91350100M000100Y43").expect_err("needs the secret").contains("pseudonym"));

        let revenue = "[[columns]]\nname = \"revenue\"\ntype = \"f64\"\nclassification = 3\n";
        let insured = keyed("insured", 1, &format!("{}{revenue}", key("uscc")));
        assert!(tax.joined(&insured).is_ok());
        assert_eq!(tax.joined(&insured).expect("joins").key_format(), Some(KeyFormat::Uscc));
        // Codes and integer ids, or codes and resident ids, never match.
        let plain = keyed("plain", 1, revenue);
        let error = tax.joined(&plain).expect_err("different keys");
        assert!(error.contains("unified social credit codes") && error.contains("integer ids"), "{error}");
        let people = keyed("people", 1, &format!("{}{revenue}", key("resident_id")));
        assert!(tax.joined(&people).expect_err("different keys").contains("resident identity numbers"));

        // On another column, with bounds, or of an unknown format: refused.
        let on_district = SCHEMA.replace("nullable = true\n", "nullable = true\npseudonym_of = \"text\"\n");
        let error = DatasetSchema::from_toml(&on_district).expect_err("not the key");
        assert!(error.contains("only the privacy unit's person_id"), "{error}");
        let bounded = DatasetSchema::from_toml(&format!(
            "name = \"b\"\nprivacy_unit = {{ person_id = \"code\", max_rows_per_person = 1 }}\n\
             [[columns]]\nname = \"code\"\ntype = \"i64\"\nclassification = 4\nlower = 0.0\n{}",
            key("uscc")
        ));
        assert!(bounded.expect_err("bounds").contains("takes no bounds"));
        let unknown = DatasetSchema::from_toml(&format!(
            "name = \"u\"\nprivacy_unit = {{ person_id = \"code\", max_rows_per_person = 1 }}\n\
             [[columns]]\nname = \"code\"\ntype = \"i64\"\nclassification = 4\n{}",
            key("passport")
        ));
        assert!(unknown.is_err());
    }
}
