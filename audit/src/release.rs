//! What a release's audit entry commits to: the released values in one canonical JSON
//! encoding (object keys sorted at every level, numbers as serde_json writes them, no
//! whitespace) and its blake3 digest. The gateway writes both into the entry that releases
//! a run's outputs; `verify-receipt` recomputes the digest from the values an operator
//! holds, so a result edited after the fact no longer matches its receipt.
//!
//! It owns the encoding only. It must not decide what is released, and it must not depend
//! on how a JSON library orders object keys (that differs with its features).

use serde_json::Value;

use crate::AuditEntry;

/// The detail key holding the canonical released values.
pub const VALUES_DETAIL: crate::Detail = crate::Detail::Values;
/// The detail key holding their blake3 digest (hex).
pub const RELEASE_DETAIL: crate::Detail = crate::Detail::Release;

/// The canonical encoding of `value`: keys sorted, no whitespace.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The digest a release entry carries for `values`: blake3 over their canonical encoding.
pub fn release_digest(values: &Value) -> String {
    blake3::hash(canonical_json(values).as_bytes()).to_hex().to_string()
}

/// Checks that the release entry `entry` (from a verified receipt) commits to `outputs`,
/// the values as an operator holds them, and that it is the entry of `run_id` when given.
pub fn check_release(entry: &AuditEntry, outputs: &Value, run_id: Option<i64>) -> Result<(), String> {
    if let Some(run_id) = run_id
        && entry.object != format!("run:{run_id}")
    {
        return Err(format!("the receipt is for {}, not for run {run_id}", entry.object));
    }
    let Some(committed) = entry.details.get(RELEASE_DETAIL.as_str()) else {
        return Err(format!(
            "the receipt's entry ({} {}) does not commit to released values: the result is held, or the log predates receipts that do",
            entry.action, entry.object
        ));
    };
    if *committed != release_digest(outputs) {
        return Err("the released values differ from the ones the log recorded".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_digest_but_a_value_does() {
        let a: Value = serde_json::from_str(r#"[{"name":"n","value":1.5,"groups":[{"b":1,"a":2}]}]"#).expect("json");
        let b: Value =
            serde_json::from_str("[ {\"groups\": [ {\"a\":2, \"b\":1} ], \"value\": 1.5, \"name\": \"n\"} ]")
                .expect("json");
        assert_eq!(canonical_json(&a), r#"[{"groups":[{"a":2,"b":1}],"name":"n","value":1.5}]"#);
        assert_eq!(release_digest(&a), release_digest(&b));
        let edited: Value =
            serde_json::from_str(r#"[{"name":"n","value":1.6,"groups":[{"b":1,"a":2}]}]"#).expect("json");
        assert_ne!(release_digest(&a), release_digest(&edited));
    }
}
