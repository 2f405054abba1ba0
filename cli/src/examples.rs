//! The example artefacts `sluice demo` and the README walkthrough use: the vehicle-risk
//! model (built from `examples/models/vehicle-risk` by `build.rs`), its manifest, the
//! vehicles schema, and a deterministic generator for the synthetic vehicles dataset.
//!
//! It must not be used for anything but examples and tests: the data is synthetic.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use sluice_vault::dummy::SplitMix64;
use sluice_vault::schema::DatasetSchema;

/// The vehicle-risk model, compiled for wasm32-unknown-unknown from this repository.
pub const VEHICLE_RISK_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vehicle_risk.wasm"));
pub const VEHICLE_RISK_MANIFEST: &str = include_str!("../../examples/models/vehicle-risk/manifest.toml");
pub const VEHICLES_SCHEMA: &str = include_str!("../../examples/data/vehicles.schema.toml");
/// One example model with the schema of the dataset it is written for.
#[derive(Debug, Clone, Copy)]
pub struct ExampleModel {
    pub name: &'static str,
    pub wasm: &'static [u8],
    pub manifest: &'static str,
    /// File name of the schema under `examples/data/`.
    pub schema_file: &'static str,
    pub schema: &'static str,
    /// Another department's dataset joined to it on their ids, for a model whose scenario
    /// needs both (file name under `examples/data/`, and the schema).
    pub joined: Option<(&'static str, &'static str)>,
}

impl ExampleModel {
    /// The schema of the rows the model sees: its dataset's, or the two joined.
    pub fn view_schema(&self) -> anyhow::Result<DatasetSchema> {
        let schema = DatasetSchema::from_toml(self.schema).map_err(anyhow::Error::msg)?;
        match self.joined {
            Some((_, joined)) => schema
                .joined(&DatasetSchema::from_toml(joined).map_err(anyhow::Error::msg)?)
                .map_err(anyhow::Error::msg),
            None => Ok(schema),
        }
    }
}

/// The tax bureau's and the social-insurance bureau's schemas, joined for enterprise credit.
pub const ENTERPRISE_TAX_SCHEMA: &str = include_str!("../../examples/data/enterprise-tax.schema.toml");
pub const SOCIAL_INSURANCE_SCHEMA: &str = include_str!("../../examples/data/social-insurance.schema.toml");
/// The market regulation bureau's register: the third department of inclusive finance
/// (seed 002 item 16), for a scenario joining all three.
pub const MARKET_REGULATION_SCHEMA: &str = include_str!("../../examples/data/market-regulation.schema.toml");

/// The example models, one per seed 002 scenario: car-owner service, inclusive finance (over
/// two departments' data joined inside Sluice), ecological environment.
pub const EXAMPLE_MODELS: [ExampleModel; 3] = [
    ExampleModel {
        name: "vehicle-risk",
        wasm: VEHICLE_RISK_WASM,
        manifest: VEHICLE_RISK_MANIFEST,
        schema_file: "vehicles.schema.toml",
        schema: VEHICLES_SCHEMA,
        joined: None,
    },
    ExampleModel {
        name: "enterprise-credit",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/enterprise_credit.wasm")),
        manifest: include_str!("../../examples/models/enterprise-credit/manifest.toml"),
        schema_file: "enterprise-tax.schema.toml",
        schema: ENTERPRISE_TAX_SCHEMA,
        joined: Some(("social-insurance.schema.toml", SOCIAL_INSURANCE_SCHEMA)),
    },
    ExampleModel {
        name: "pollution-anomaly",
        wasm: include_bytes!(concat!(env!("OUT_DIR"), "/pollution_anomaly.wasm")),
        manifest: include_str!("../../examples/models/pollution-anomaly/manifest.toml"),
        schema_file: "air-quality.schema.toml",
        schema: include_str!("../../examples/data/air-quality.schema.toml"),
        joined: None,
    },
];

/// Rows and seed of the shipped `examples/data/vehicles.csv`.
pub const VEHICLES_ROWS: usize = 100_000;
pub const VEHICLES_SEED: u64 = 2026;

const DISTRICTS: [(&str, u32); 14] = [
    ("honghuagang", 22),
    ("huichuan", 18),
    ("bozhou", 14),
    ("tongzi", 6),
    ("suiyang", 4),
    ("zhengan", 4),
    ("daozhen", 3),
    ("wuchuan", 3),
    ("fenggang", 3),
    ("meitan", 4),
    ("yuqing", 3),
    ("xishui", 5),
    ("chishui", 3),
    ("renhuai", 8),
];
const VEHICLE_TYPES: [(&str, u32); 6] =
    [("passenger_car", 55), ("suv", 22), ("light_truck", 10), ("heavy_truck", 4), ("bus", 2), ("motorcycle", 7)];

/// The synthetic vehicles dataset as CSV, identical for the same rows and seed.
pub fn vehicles_csv(rows: usize, seed: u64) -> String {
    let mut csv = Vec::with_capacity(rows * 56);
    write_vehicles_csv(&mut csv, rows, seed).expect("writing to memory does not fail");
    String::from_utf8(csv).expect("the generator writes ASCII")
}

/// Writes the synthetic vehicles dataset as CSV to `out`, a block of rows at a time, so a
/// benchmark can make 100 million rows without holding them.
pub fn write_vehicles_csv(out: &mut impl std::io::Write, rows: usize, seed: u64) -> std::io::Result<()> {
    let mut random = SplitMix64(seed);
    let mut csv = String::with_capacity(1 << 20);
    csv.push_str(
        "district,vehicle_type,vehicle_age_years,commercial_use,violations_12m,accidents_5y,insured_value_cny\n",
    );
    for _ in 0..rows {
        let district = random.weighted(&DISTRICTS);
        let vehicle_type = random.weighted(&VEHICLE_TYPES);
        let commercial =
            random.unit() < if matches!(vehicle_type, "bus" | "heavy_truck" | "light_truck") { 0.7 } else { 0.08 };
        // Ages skew young: the fleet grew fast over the last decade.
        let age = (-(1.0 - random.unit()).ln() * 6.0).min(30.0);
        let exposure = if commercial { 2.2 } else { 1.0 };
        let violations = random.poisson(0.9 * exposure, 60);
        let accidents = random.poisson((0.12 + 0.01 * age + 0.04 * violations as f64) * exposure, 20);
        let base_value = match vehicle_type {
            "heavy_truck" => 420_000.0,
            "bus" => 650_000.0,
            "light_truck" => 120_000.0,
            "suv" => 210_000.0,
            "motorcycle" => 12_000.0,
            _ => 150_000.0,
        };
        let insured = random.unit() >= 0.04;
        let value = base_value * (0.5 + random.unit()) * 0.9f64.powf(age);
        let _ = write!(csv, "{district},{vehicle_type},{age:.1},{commercial},{violations},{accidents},",);
        if insured {
            let _ = write!(csv, "{:.0}", value.clamp(0.0, 3_000_000.0));
        }
        csv.push('\n');
        if csv.len() >= (1 << 20) - 128 {
            out.write_all(csv.as_bytes())?;
            csv.clear();
        }
    }
    out.write_all(csv.as_bytes())
}

const INDUSTRIES: [(&str, u32); 9] = [
    ("agriculture", 12),
    ("manufacturing", 14),
    ("construction", 9),
    ("retail", 22),
    ("logistics", 8),
    ("hospitality", 11),
    ("liquor", 6),
    ("tourism", 7),
    ("services", 11),
];

/// How many organisation parts (9 characters of the code's alphabet) there are: 31^9.
const USCC_ORGANISATIONS: u64 = 26_439_622_160_671;
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// The `index`th synthetic unified social credit code of a Zunyi enterprise (91 5203 00…):
/// a well-formed code with a correct check character, its organisation part a permutation
/// of `index` (not a real registration: real organisation parts carry a check of their own).
pub fn synthetic_uscc(index: u64, offset: u64) -> String {
    let permuted =
        (u128::from(index % USCC_ORGANISATIONS) * 2_654_435_761 + u128::from(offset)) % u128::from(USCC_ORGANISATIONS);
    let mut organisation = permuted as u64;
    let mut code = *b"915203000000000000";
    for slot in code[8..17].iter_mut().rev() {
        *slot = USCC_ALPHABET[(organisation % 31) as usize];
        organisation /= 31;
    }
    code[17] = sluice_vault::pseudonym::uscc_check_character(&code[..17]).expect("the code's own alphabet");
    String::from_utf8(code.to_vec()).expect("ascii")
}

/// Two departments' records of the same synthetic enterprises, as CSV: the tax bureau's
/// (`rows` enterprises) and the social-insurance bureau's (an account for about 85% of
/// them, plus accounts of enterprises the tax bureau does not hold, about 5%), both keyed by
/// the enterprise's unified social credit code and in different orders. Identical for the same rows and
/// seed. A model sees them only joined inside Sluice, without the code.
pub fn enterprise_csvs(rows: usize, seed: u64) -> (String, String) {
    let mut random = SplitMix64(seed);
    let mut tax = String::from("enterprise_code,industry,years_operating,annual_tax_paid_cny,tax_violation\n");
    let mut accounts = Vec::with_capacity(rows + rows / 20);
    // Organisation parts are a bijection of the enterprise's index (multiplying by a number
    // prime to 31^9 permutes them), so every code is distinct.
    let offset = random.next_u64() % USCC_ORGANISATIONS;
    for index in 0..rows {
        let code = synthetic_uscc(index as u64, offset);
        let industry = random.weighted(&INDUSTRIES);
        let years = (-(1.0 - random.unit()).ln() * 8.0).min(70.0);
        // Sizes and taxes are heavy-tailed: most enterprises are small.
        let employees = ((-(1.0 - random.unit()).ln() * 40.0).powf(1.3) as i64).min(20_000);
        let tax_paid = (employees as f64 * 9_000.0 * (0.3 + random.unit()) * (1.0 + years / 10.0)).min(100_000_000.0);
        let violation = random.unit() < 0.06;
        let _ = writeln!(tax, "{code},{industry},{years:.1},{tax_paid:.0},{violation}");
        if random.unit() < 0.85 {
            let arrears = if random.unit() < 0.12 { random.poisson(4.0, 60) } else { 0 };
            accounts.push((code, employees, arrears));
        }
    }
    for index in rows..rows + rows / 20 {
        let employees = (random.unit() * 50.0) as i64;
        accounts.push((synthetic_uscc(index as u64, offset), employees, random.poisson(1.0, 60)));
    }
    // The other department keeps its own order.
    for index in (1..accounts.len()).rev() {
        accounts.swap(index, (random.next_u64() % (index as u64 + 1)) as usize);
    }
    let mut insurance = String::from("enterprise_code,employees,social_insurance_arrears_months\n");
    for (code, employees, arrears) in accounts {
        let _ = writeln!(insurance, "{code},{employees},{arrears}");
    }
    (tax, insurance)
}

/// The market regulation bureau's register of the enterprises [`enterprise_csvs`] makes
/// for the same `rows` and `seed` (the same codes): about 90% of them, each with its
/// registered capital and whether it is listed for abnormal operations, in an order of the
/// bureau's own (`enterprise_code,registered_capital_cny,abnormal_operations`).
pub fn market_regulation_csv(rows: usize, seed: u64) -> String {
    let offset = SplitMix64(seed).next_u64() % USCC_ORGANISATIONS;
    let mut random = SplitMix64(seed ^ 0x6d61_726b_6574);
    let mut entries = Vec::with_capacity(rows);
    for index in 0..rows {
        if random.unit() < 0.9 {
            let capital = (-(1.0 - random.unit()).ln() * 2_000_000.0).min(100_000_000.0);
            entries.push((synthetic_uscc(index as u64, offset), capital, random.unit() < 0.04));
        }
    }
    for index in (1..entries.len()).rev() {
        entries.swap(index, (random.next_u64() % (index as u64 + 1)) as usize);
    }
    let mut csv = String::from("enterprise_code,registered_capital_cny,abnormal_operations\n");
    for (code, capital, abnormal) in entries {
        let _ = writeln!(csv, "{code},{capital:.0},{abnormal}");
    }
    csv
}

/// Writes the example files a user needs into `dir`: the vehicles CSV, the market
/// regulation bureau's schema (a third department to join), and for every example model
/// its module, manifest and dataset schema.
pub fn write_examples(dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let csv = vehicles_csv(VEHICLES_ROWS, VEHICLES_SEED);
    let mut files: Vec<(String, &[u8])> = vec![
        ("vehicles.csv".into(), csv.as_bytes()),
        ("market-regulation.schema.toml".into(), MARKET_REGULATION_SCHEMA.as_bytes()),
    ];
    for model in &EXAMPLE_MODELS {
        files.push((format!("{}.wasm", model.name), model.wasm));
        files.push((format!("{}.manifest.toml", model.name), model.manifest.as_bytes()));
        files.push((model.schema_file.into(), model.schema.as_bytes()));
        if let Some((file, schema)) = model.joined {
            files.push((file.into(), schema.as_bytes()));
        }
    }
    let mut written = Vec::new();
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped CSV is exactly what the generator makes from its seed.
    #[test]
    fn shipped_vehicles_csv_is_reproducible() {
        let shipped = include_str!("../../examples/data/vehicles.csv");
        let generated = vehicles_csv(VEHICLES_ROWS, VEHICLES_SEED);
        assert_eq!(blake3::hash(shipped.as_bytes()), blake3::hash(generated.as_bytes()));
        assert_ne!(vehicles_csv(100, VEHICLES_SEED + 1), vehicles_csv(100, VEHICLES_SEED));
    }

    /// Every generated row satisfies the shipped schema.
    #[test]
    fn generated_rows_follow_the_schema() {
        let schema = sluice_vault::schema::DatasetSchema::from_toml(VEHICLES_SCHEMA).expect("valid schema");
        let csv = vehicles_csv(5_000, 7);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let headers = reader.headers().expect("header").clone();
        for record in reader.records() {
            let record = record.expect("record");
            for (header, field) in headers.iter().zip(record.iter()) {
                let (_, column) = schema.column(header).expect("column in schema");
                column.parse_field(field).unwrap_or_else(|problem| panic!("{header} {problem}"));
            }
        }
    }

    /// Both departments' enterprise files parse under their schemas: every code well formed
    /// and distinct (an enterprise is one row in each), and the two share the codes of the
    /// enterprises both hold.
    #[test]
    fn enterprise_files_carry_distinct_well_formed_codes() {
        let (tax, insurance) = enterprise_csvs(50_000, 3);
        let pseudonyms = sluice_vault::pseudonym::PseudonymKey::for_dummy_data();
        for (csv, schema) in [(&tax, ENTERPRISE_TAX_SCHEMA), (&insurance, SOCIAL_INSURANCE_SCHEMA)] {
            let schema = DatasetSchema::from_toml(schema).expect("valid schema");
            let parsed = sluice_vault::parse_chunks(csv.as_bytes(), &schema, &pseudonyms, false, |_, _, _| Ok(()))
                .expect("every code valid, each once");
            assert_eq!(parsed.rows as usize, csv.lines().count() - 1);
        }
        let codes = |csv: &str| -> std::collections::HashSet<String> {
            csv.lines().skip(1).map(|line| line.split(',').next().expect("code").to_owned()).collect()
        };
        let shared = codes(&tax).intersection(&codes(&insurance)).count();
        assert!((41_000..=44_000).contains(&shared), "about 85% of enterprises insured: {shared}");
        assert_eq!(synthetic_uscc(7, 11), synthetic_uscc(7, 11));
        assert_ne!(synthetic_uscc(7, 11), synthetic_uscc(8, 11));
    }
}
