//! A point in time as Sluice keeps and shows it: UTC, written as RFC 3339.
//!
//! It owns the one text form of a time — in every table, response and audit detail: UTC
//! with nanoseconds always written out (`2026-03-01T00:00:00.000000000Z`), so a time reads
//! back exactly as it was and text order is time order (the store compares times as text
//! on both back ends; RFC 3339's optional fraction would put `09:00:00.5Z` before
//! `09:00:00Z`). It must not read the clock (the service's `Clock` does) or know how a
//! column is bound (the store does).

use std::fmt;

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// The written form: RFC 3339 in UTC with all nine digits of the fraction.
const WRITTEN: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// A time in UTC. Parsing accepts any RFC 3339 offset and converts it; showing writes `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    pub fn new(time: OffsetDateTime) -> Self {
        Self(time.to_offset(UtcOffset::UTC))
    }

    /// Reads RFC 3339 text; the error names the text, which is never secret (times are
    /// public facts of the procedure).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(Self::new)
            .map_err(|_| anyhow::anyhow!("`{text}` is not an RFC 3339 time"))
    }

    pub fn time(self) -> OffsetDateTime {
        self.0
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(time: OffsetDateTime) -> Self {
        Self::new(time)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.format(WRITTEN).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_reads_back_as_written_in_utc() {
        let parsed = Timestamp::parse("2026-03-01T08:00:00+08:00").expect("parses");
        assert_eq!(parsed.to_string(), "2026-03-01T00:00:00.000000000Z");
        assert_eq!(Timestamp::parse(&parsed.to_string()).expect("reparses"), parsed);
        let json = serde_json::to_string(&parsed).expect("serialises");
        assert_eq!(json, "\"2026-03-01T00:00:00.000000000Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).expect("deserialises"), parsed);
    }

    #[test]
    fn text_order_is_time_order() {
        let times =
            ["2026-03-01T09:00:00.5Z", "2026-03-01T09:00:00Z", "2026-03-01T10:59:59.999+02:00", "1999-12-31T23:59:59Z"];
        let mut parsed: Vec<Timestamp> = times.iter().map(|text| Timestamp::parse(text).expect("parses")).collect();
        let mut texts: Vec<String> = parsed.iter().map(Timestamp::to_string).collect();
        parsed.sort();
        texts.sort();
        assert_eq!(parsed.iter().map(Timestamp::to_string).collect::<Vec<_>>(), texts);
        // RFC 3339's own form would not sort: the fraction is optional.
        assert!("2026-03-01T09:00:00.5Z" < "2026-03-01T09:00:00Z");
    }

    #[test]
    fn what_is_not_a_time_is_refused() {
        assert!(Timestamp::parse("yesterday").is_err());
        assert!(Timestamp::parse("2026-02-30T00:00:00Z").is_err());
        assert!(serde_json::from_str::<Timestamp>("12").is_err());
    }
}
