//! Dummy data: synthetic rows that follow a dataset schema (types, domains, bounds, null
//! rates), deterministic for a seed, for developing models without real data.
//!
//! It owns the generator only. It must never read a real dataset: dummy data is made from
//! the schema, which is public catalogue metadata, and nothing else.

use std::fmt::Write as _;

use sluice_sandbox::ColumnType;

use crate::pseudonym::{KeyFormat, resident_id_check_character, uscc_check_character};
use crate::schema::{ColumnSchema, DatasetSchema};

const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// Share of nulls in a nullable column.
const NULL_RATE: f64 = 0.05;
/// Range used for a numeric column that declares no bounds.
const DEFAULT_RANGE: (f64, f64) = (0.0, 100.0);

/// SplitMix64: small, fast and fully determined by its seed. Not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn weighted<'a>(&mut self, choices: &[(&'a str, u32)]) -> &'a str {
        let total: u32 = choices.iter().map(|(_, weight)| weight).sum();
        let mut pick = (self.unit() * total as f64) as u32;
        for (name, weight) in choices {
            if pick < *weight {
                return name;
            }
            pick -= weight;
        }
        choices[choices.len() - 1].0
    }

    /// Poisson by inversion; fine for the small means used here.
    pub fn poisson(&mut self, mean: f64, cap: i64) -> i64 {
        let (mut count, mut probability, mut cumulative) = (0, (-mean).exp(), (-mean).exp());
        let target = self.unit();
        while target > cumulative && count < cap {
            count += 1;
            probability *= mean / count as f64;
            cumulative += probability;
        }
        count
    }
}

/// `rows` synthetic rows for `schema` as CSV (header first), identical for the same seed.
pub fn dummy_csv(schema: &DatasetSchema, rows: usize, seed: u64) -> String {
    let mut random = SplitMix64(seed);
    let mut csv = schema.columns.iter().map(|column| column.name.as_str()).collect::<Vec<_>>().join(",");
    csv.push('\n');
    let person_column = match &schema.privacy_unit {
        crate::schema::PrivacyUnit::PersonId { column, .. } => Some(column.as_str()),
        crate::schema::PrivacyUnit::RowPerPerson => None,
    };
    for row in 0..rows {
        for (index, column) in schema.columns.iter().enumerate() {
            if index > 0 {
                csv.push(',');
            }
            if Some(column.name.as_str()) == person_column {
                // One row per dummy person keeps every contribution within the bound.
                dummy_key(column.pseudonym_of, row, &mut csv);
                continue;
            }
            if column.nullable && random.unit() < NULL_RATE {
                continue;
            }
            dummy_field(column, &mut random, &mut csv);
        }
        csv.push('\n');
    }
    csv
}

/// The `row`th dummy person's id: the number itself, or a well-formed code carrying it
/// after a region part of 9s, which no real code has.
fn dummy_key(format: Option<KeyFormat>, row: usize, out: &mut String) {
    let (first, check) = match format {
        None => {
            let _ = write!(out, "{row}");
            return;
        }
        Some(KeyFormat::Text) => {
            let _ = write!(out, "dummy-{row}");
            return;
        }
        Some(KeyFormat::Uscc) => {
            let first = format!("91999999{:09}", row % 1_000_000_000);
            let check = uscc_check_character(first.as_bytes());
            (first, check)
        }
        Some(KeyFormat::ResidentId) => {
            let first = format!("999999{:011}", row % 100_000_000_000);
            let check = resident_id_check_character(first.as_bytes());
            (first, check)
        }
    };
    out.push_str(&first);
    out.push(char::from(check.expect("17 digits make a code")));
}

fn dummy_field(column: &ColumnSchema, random: &mut SplitMix64, out: &mut String) {
    let (lower, upper) = (column.lower.unwrap_or(DEFAULT_RANGE.0), column.upper.unwrap_or(DEFAULT_RANGE.1));
    let _ = match column.column_type {
        ColumnType::F64 => write!(out, "{}", lower + random.unit() * (upper - lower)),
        ColumnType::I64 => {
            let (low, high) = (lower.ceil() as i64, upper.floor() as i64);
            let span = (high - low + 1).max(1) as u64;
            write!(out, "{}", low + (random.next_u64() % span) as i64)
        }
        ColumnType::Category => {
            let pick = (random.next_u64() % column.domain.len() as u64) as usize;
            write!(out, "{}", column.domain[pick])
        }
        ColumnType::Bool => write!(out, "{}", random.unit() < 0.5),
        ColumnType::Date => {
            // Days since 1970-01-01 within the column's bounds (default 2000-01-01 to 2030-12-31).
            let (low, high) = (column.lower.unwrap_or(10_957.0) as i64, column.upper.unwrap_or(22_279.0) as i64);
            let day = low + (random.next_u64() % (high - low + 1).max(1) as u64) as i64;
            let date = time::Date::from_julian_day(UNIX_EPOCH_JULIAN_DAY + day as i32).unwrap_or(time::Date::MIN);
            write!(out, "{date}")
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    const VEHICLES_SCHEMA: &str = include_str!("../../examples/data/vehicles.schema.toml");

    #[test]
    fn dummy_rows_follow_the_schema_and_repeat_for_a_seed() {
        let schema = DatasetSchema::from_toml(VEHICLES_SCHEMA).expect("schema");
        let csv = dummy_csv(&schema, 2_000, 5);
        assert_eq!(csv, dummy_csv(&schema, 2_000, 5));
        assert_ne!(csv, dummy_csv(&schema, 2_000, 6));
        let pseudonyms = crate::pseudonym::PseudonymKey::for_dummy_data();
        let parsed = crate::chunks::parse_chunks(csv.as_bytes(), &schema, &pseudonyms, false, |_, _, _| Ok(()))
            .expect("every row valid");
        assert_eq!(parsed.rows, 2_000);
        let nulls = csv.lines().skip(1).filter(|line| line.ends_with(',')).count();
        assert!((40..=160).contains(&nulls), "about 5% nulls in the nullable column, got {nulls}");
    }

    #[test]
    fn dummy_keys_are_well_formed_codes_of_the_declared_format() {
        for format in ["uscc", "resident_id", "text"] {
            let schema = DatasetSchema::from_toml(&format!(
                "name = \"k\"\nprivacy_unit = {{ person_id = \"code\", max_rows_per_person = 1 }}\n\
                 [[columns]]\nname = \"code\"\ntype = \"i64\"\nclassification = 4\npseudonym_of = \"{format}\"\n\
                 [[columns]]\nname = \"v\"\ntype = \"f64\"\nclassification = 2\n"
            ))
            .expect("schema");
            let csv = dummy_csv(&schema, 3_000, 1);
            let pseudonyms = crate::pseudonym::PseudonymKey::for_dummy_data();
            let parsed = crate::chunks::parse_chunks(csv.as_bytes(), &schema, &pseudonyms, false, |_, _, _| Ok(()))
                .expect("every code valid and distinct");
            assert_eq!(parsed.rows, 3_000, "{format}");
        }
    }
}
