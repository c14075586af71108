//! A sweep's matrix: axes (a `produce` flag and its values) and the points
//! of their cartesian product, each with a stable file-safe id.

/// An axis that cannot be swept, with the flag or text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AxisError {
    #[error("--vary takes FLAG=V1,V2,... (e.g. linger=0ms,5ms), not '{0}'")]
    VaryForm(String),
    #[error("'{0}' is not a produce flag name (like batch-size)")]
    FlagName(String),
    #[error("--{0}: an empty value in the list")]
    EmptyValue(String),
    #[error("--{flag}: {value} is listed twice")]
    Twice { flag: String, value: String },
}

/// One swept flag and the values it takes, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Axis {
    /// The `produce` flag without dashes: `batch-size`.
    pub flag: String,
    pub values: Vec<String>,
}

impl Axis {
    /// `FLAG=V1,V2,...` or `FLAG=V1;V2;...` (`--vary`).
    pub fn parse(spec: &str) -> Result<Axis, AxisError> {
        let (flag, values) = spec
            .split_once('=')
            .ok_or_else(|| AxisError::VaryForm(spec.into()))?;
        Axis::new(flag.trim().trim_start_matches("--"), values)
    }

    /// A flag and its values as one list, separated by `,` (or by `;` when
    /// the values hold commas themselves: `cpus=0-1;2,3`).
    pub fn new(flag: &str, values: &str) -> Result<Axis, AxisError> {
        let sep = if values.contains(';') { ';' } else { ',' };
        Axis::from_values(
            flag,
            values.split(sep).map(|v| v.trim().to_owned()).collect(),
        )
    }

    pub fn from_values(flag: &str, values: Vec<String>) -> Result<Axis, AxisError> {
        if flag.is_empty()
            || !flag
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(AxisError::FlagName(flag.into()));
        }
        if values.iter().any(|v| v.trim().is_empty()) {
            return Err(AxisError::EmptyValue(flag.into()));
        }
        for (i, v) in values.iter().enumerate() {
            if values[..i].contains(v) {
                return Err(AxisError::Twice {
                    flag: flag.into(),
                    value: v.clone(),
                });
            }
        }
        Ok(Axis {
            flag: flag.to_owned(),
            values,
        })
    }
}

/// One combination: a value for every axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// (flag, value) per axis, in axis order.
    pub values: Vec<(String, String)>,
}

impl Point {
    /// A file-name-safe id that names the point's reports:
    /// `batch-size=64KiB_linger=0ms`. Stable across runs, so a resumed
    /// sweep finds the reports of finished points.
    pub fn id(&self) -> String {
        if self.values.is_empty() {
            return "base".into();
        }
        self.values
            .iter()
            .map(|(f, v)| {
                let v: String = v
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || ".-+".contains(c) {
                            c
                        } else {
                            '~'
                        }
                    })
                    .collect();
                format!("{f}={v}")
            })
            .collect::<Vec<_>>()
            .join("_")
    }

    /// People's label: `batch-size=64KiB linger=0ms`.
    pub fn label(&self) -> String {
        if self.values.is_empty() {
            return "(base)".into();
        }
        self.values
            .iter()
            .map(|(f, v)| format!("{f}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The values alone, for chart axes: `64KiB/0ms`.
    pub fn short_label(&self) -> String {
        self.values
            .iter()
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The point's `produce` flags.
    pub fn args(&self) -> Vec<String> {
        self.values
            .iter()
            .flat_map(|(f, v)| [format!("--{f}"), v.clone()])
            .collect()
    }
}

/// Every combination of the axes; the first axis varies slowest.
pub fn points(axes: &[Axis]) -> Vec<Point> {
    let mut out = vec![Point { values: Vec::new() }];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|p| {
                axis.values.iter().map(move |v| {
                    let mut values = p.values.clone();
                    values.push((axis.flag.clone(), v.clone()));
                    Point { values }
                })
            })
            .collect();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_product_varies_the_last_axis_fastest() {
        let axes = [
            Axis::new("batch-size", "64KiB,1MiB").unwrap(),
            Axis::parse("--linger=0ms, 5ms").unwrap(),
        ];
        let p = points(&axes);
        let labels: Vec<String> = p.iter().map(Point::label).collect();
        assert_eq!(
            labels,
            [
                "batch-size=64KiB linger=0ms",
                "batch-size=64KiB linger=5ms",
                "batch-size=1MiB linger=0ms",
                "batch-size=1MiB linger=5ms",
            ]
        );
        assert_eq!(p[1].id(), "batch-size=64KiB_linger=5ms");
        assert_eq!(p[1].short_label(), "64KiB/5ms");
        assert_eq!(
            p[1].args(),
            ["--batch-size", "64KiB", "--linger", "5ms"].map(String::from)
        );
        assert_eq!(points(&[]).len(), 1);
        assert_eq!(points(&[])[0].id(), "base");
    }

    #[test]
    fn ids_are_file_safe() {
        let p = points(&[Axis::parse("cpus=0-1;2,3").unwrap()]);
        assert_eq!(p[0].id(), "cpus=0-1");
        assert_eq!(p[1].id(), "cpus=2~3");
        assert_eq!(p[1].args()[1], "2,3");
        let p = &points(&[Axis::new("header", "a/b").unwrap()])[0];
        assert_eq!(p.id(), "header=a~b");
    }

    #[test]
    fn bad_axes_are_refused() {
        for bad in [
            "linger",
            "Linger=1ms",
            "linger=1ms,,2ms",
            "linger=1ms,1ms",
            "=1",
        ] {
            assert!(Axis::parse(bad).is_err(), "{bad}");
        }
    }
}
