//! docs/report.schema.json, generated from the report's types.
//!
//! The schema describes what this build writes (a schema for serializing:
//! a field is required unless it is left out when empty), so that reports
//! can be validated against it; readers here accept older reports that
//! lack newer fields. `datastorm report schema` prints it; a test fails
//! when the committed file differs (DATASTORM_BLESS=1 rewrites it).

use super::{RunReport, SCHEMA};
use schemars::generate::SchemaSettings;
use serde_json::Value;

/// The JSON Schema (draft 2020-12) of [`RunReport`], as pretty JSON.
pub fn json() -> String {
    let generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let mut schema = generator.into_root_schema_for::<RunReport>();
    let version = SCHEMA.rsplit('/').next().unwrap_or_default();
    schema.insert(
        "$id".into(),
        format!("urn:datastorm:report-schema:run-{version}").into(),
    );
    schema.insert(
        "title".into(),
        format!("DataStorm run report, {SCHEMA}").into(),
    );
    let mut value = schema.to_value();
    if let Some(d) = value.pointer_mut("/$defs/Duration") {
        d["description"] = "A Rust Duration as serde writes it.".into();
    }
    tidy(&mut value);
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text + "\n"
}

/// Drops the readers' defaults (this schema describes what is written, and
/// every field it requires is written) and joins the doc comments' wrapped
/// lines into one line per paragraph.
fn tidy(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("default");
            if let Some(Value::String(d)) = m.get_mut("description") {
                *d = d
                    .split("\n\n")
                    .map(|para| para.split('\n').collect::<Vec<_>>().join(" "))
                    .collect::<Vec<_>>()
                    .join("\n\n");
            }
            for (key, child) in m.iter_mut() {
                if key == "properties" || key == "$defs" {
                    // Names, not schemas: a field called "default" stays.
                    if let Value::Object(named) = child {
                        named.values_mut().for_each(tidy);
                    }
                } else {
                    tidy(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(tidy),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    /// The committed schema, from the repository root.
    const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/report.schema.json");

    #[test]
    fn committed_schema_is_generated_from_the_types() {
        let generated = super::json();
        if std::env::var_os("DATASTORM_BLESS").is_some() {
            std::fs::write(COMMITTED, &generated).expect("write docs/report.schema.json");
        }
        let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/report.schema.json is not the schema of the report types; run \
             `DATASTORM_BLESS=1 cargo test -p datastorm committed_schema` (or \
             `datastorm report schema > docs/report.schema.json`) and commit it"
        );
    }
}
