//! Schemas of the streams of one run, compiled together so that `ref`
//! hints point from one stream to another by stream name.

use super::{collect_refs, compile_named, CompiledSchema, SchemaError};
use std::path::{Path, PathBuf};

/// Reads and compiles the schema files of a run's streams, given as
/// `(stream name, schema file)`. A `ref` naming a stream of the run
/// resolves to that stream's set; one naming a stream that is not in the
/// run loads `NAME.avsc` from the referencing schema's folder (compiled for
/// its sets, not produced). Returns the run's schemas in the order given.
pub fn load_streams(streams: &[(String, PathBuf)]) -> Result<Vec<CompiledSchema>, SchemaError> {
    // (stream, file as shown in errors, text)
    let mut files: Vec<(String, String, String)> = Vec::new();
    let mut todo: Vec<(String, PathBuf)> = streams.to_vec();
    todo.reverse();
    while let Some((name, path)) = todo.pop() {
        if files.iter().any(|(n, _, _)| *n == name) {
            continue;
        }
        let text = read(&path)?;
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
            let mut refs = Vec::new();
            collect_refs(&json, &mut refs);
            let dir = path.parent().unwrap_or_else(|| Path::new("."));
            for stream in refs {
                let known = streams.iter().any(|(n, _)| *n == stream)
                    || files.iter().any(|(n, _, _)| *n == stream);
                let sibling = dir.join(format!("{stream}.avsc"));
                // A missing file is left to the compiler's "unknown reference".
                if !known && sibling.is_file() {
                    todo.insert(0, (stream.clone(), sibling));
                }
            }
        }
        files.push((name, path.display().to_string(), text));
    }
    let named: Vec<(&str, &str, &str)> = files
        .iter()
        .map(|(n, f, t)| (n.as_str(), f.as_str(), t.as_str()))
        .collect();
    let mut compiled = compile_named(&named, 0)?;
    compiled.truncate(streams.len());
    Ok(compiled)
}

fn read(path: &Path) -> Result<String, SchemaError> {
    std::fs::read_to_string(path).map_err(|source| SchemaError::Io {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas")
    }

    #[test]
    fn run_streams_resolve_references_by_stream_name() {
        let dir = schemas();
        let got = load_streams(&[
            ("buyers".into(), dir.join("users.avsc")),
            ("sales".into(), dir.join("orders.avsc")),
        ]);
        // orders.avsc refers to "users", which is not a stream of this run:
        // it is loaded from the folder for its key set.
        let got = got.expect("compiles");
        assert_eq!(got.len(), 2);
        assert!(got[1].name().ends_with("orders.avsc"), "{}", got[1].name());
    }

    #[test]
    fn a_missing_schema_file_is_named() {
        let err = load_streams(&[("x".into(), PathBuf::from("/nonexistent/x.avsc"))])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/nonexistent/x.avsc: cannot read the schema file"),
            "{err}"
        );
    }
}
