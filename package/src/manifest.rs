//! `crpc.toml`: what a package is and what its functions take.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use task_api::Resources;

/// File name of the manifest at the archive root.
pub const MANIFEST_FILE: &str = "crpc.toml";

/// How the processor runs the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A WASM component (`component`).
    Wasm,
    /// A native program (`command`) speaking JSON lines on stdio.
    Native,
}

/// JSON type of an argument or return value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArgType {
    /// A JSON number without a fraction.
    Integer,
    /// Any JSON number.
    Number,
    /// A JSON string.
    String,
    /// true / false.
    Boolean,
    /// A JSON array.
    Array,
    /// A JSON object.
    Object,
    /// Anything, null included.
    Any,
}

impl ArgType {
    /// Whether `v` is of this type.
    pub fn accepts(self, v: &Value) -> bool {
        match self {
            ArgType::Integer => v.is_i64() || v.is_u64(),
            ArgType::Number => v.is_number(),
            ArgType::String => v.is_string(),
            ArgType::Boolean => v.is_boolean(),
            ArgType::Array => v.is_array(),
            ArgType::Object => v.is_object(),
            ArgType::Any => true,
        }
    }

    /// The JSON Schema of a value of this type.
    pub fn json_schema(self) -> Value {
        let ty = match self {
            ArgType::Integer => "integer",
            ArgType::Number => "number",
            ArgType::String => "string",
            ArgType::Boolean => "boolean",
            ArgType::Array => "array",
            ArgType::Object => "object",
            ArgType::Any => return serde_json::json!({}),
        };
        serde_json::json!({ "type": ty })
    }

    fn article(self) -> &'static str {
        match self {
            ArgType::Integer => "an integer",
            ArgType::Number => "a number",
            ArgType::String => "a string",
            ArgType::Boolean => "a boolean",
            ArgType::Array => "an array",
            ArgType::Object => "an object",
            ArgType::Any => "any value",
        }
    }
}

/// One argument of a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArgSpec {
    /// Name (also its keyword).
    pub name: String,
    /// JSON type.
    #[serde(rename = "type")]
    pub ty: ArgType,
    /// May be left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

impl ArgSpec {
    /// Its type's JSON Schema, titled with its name.
    pub fn schema(&self) -> Value {
        let mut s = self.ty.json_schema();
        s["title"] = Value::String(self.name.clone());
        if !self.optional {
            s["description"] = Value::String("required (by position or by keyword)".into());
        }
        s
    }
}

/// A function's typed signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionSig {
    /// Arguments, in positional order; each may also be passed by keyword.
    #[serde(default)]
    pub args: Vec<ArgSpec>,
    /// Return type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returns: Option<ArgType>,
    /// One line for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The argument the runtime grows with (`cost = "samples"`): the server fits runtime ≈
    /// a + b × its measure (a number's value; a string's, array's or object's length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<String>,
    /// At most this many tasks of the function leased at once, across every processor and
    /// server replica (1 to 100,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// At most this many tasks of the function started per second, across every processor and
    /// server replica, evenly spaced (0.001 to 100,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
}

/// The largest `max_concurrent` (manifest or submit).
pub const MAX_CONCURRENT: u32 = 100_000;
/// The range of `rate_per_s`.
pub const RATE_RANGE: std::ops::RangeInclusive<f64> = 0.001..=100_000.0;

impl FunctionSig {
    /// The position and value of argument `name`, passed by position or by keyword.
    pub fn arg_value<'a>(
        &self,
        name: &str,
        args: &'a [Value],
        kwargs: &'a Map<String, Value>,
    ) -> Option<(usize, &'a Value)> {
        let i = self.args.iter().position(|a| a.name == name)?;
        args.get(i).or_else(|| kwargs.get(name)).map(|v| (i, v))
    }
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `[a-z0-9][a-z0-9_-]{0,63}`.
    pub name: String,
    /// Semver.
    pub version: String,
    /// wasm or native.
    pub kind: Kind,
    /// One line for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// wasm: the component file, relative to the package root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// native: the program and its arguments, started once per slot in the package dir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// native: shell commands run once per version before first use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<String>,
    /// Functions by name.
    pub functions: BTreeMap<String, FunctionSig>,
    /// What every task of this package needs.
    #[serde(default, skip_serializing_if = "Resources::is_empty")]
    pub resources: Resources,
    /// Configuration the package receives when it starts: the WASM `init` export's argument
    /// (as JSON text) and a native program's `init` message. A processor may override keys
    /// (`task-processor --init NAME=JSON`).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    #[schema(value_type = Object)]
    pub init: Map<String, Value>,
}

/// A manifest problem, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ManifestError {
    /// Dotted path of the field (`functions.f.args[0].type`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError {
        field: field.into(),
        message: message.into(),
    }
}

/// Whether `name` is a valid package name: `[a-z0-9][a-z0-9_-]{0,63}`. Such a name is safe as
/// one path component on every processor (no `.`, `/` or upper case).
pub fn valid_package_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=64).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// Whether `version` is an exact semver version (`1.2.3`, `1.0.0-rc.1+build`) of at most 64
/// characters. Such a string holds only `[0-9A-Za-z.+-]` and never a `..` component, so it is
/// safe as one path component.
pub fn valid_exact_version(version: &str) -> bool {
    version.len() <= 64 && semver::Version::parse(version).is_ok()
}

/// Whether `req` is a semver requirement (`^1.2`, `=1.0.0`, `>=1, <3`) of at most 64 characters.
pub fn valid_version_req(req: &str) -> bool {
    req.len() <= 64 && !req.trim().is_empty() && semver::VersionReq::parse(req).is_ok()
}

fn valid_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn relative_path_ok(p: &str) -> bool {
    use std::path::Component;
    let path = std::path::Path::new(p);
    !p.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

impl Manifest {
    /// Parses and validates `crpc.toml` text.
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let de = toml::Deserializer::new(text);
        let m: Manifest = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let msg = inner.message().to_string();
            let field = if path == "." {
                missing_field(&msg).unwrap_or_else(|| "crpc.toml".into())
            } else {
                path
            };
            err(field, msg)
        })?;
        m.validate()?;
        Ok(m)
    }

    /// Checks everything serde cannot.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if !valid_package_name(&self.name) {
            return Err(err("name", "must match [a-z0-9][a-z0-9_-]{0,63}"));
        }
        semver::Version::parse(&self.version).map_err(|e| {
            err(
                "version",
                format!("`{}` is not a semver version: {e}", self.version),
            )
        })?;
        match self.kind {
            Kind::Wasm => match &self.component {
                None => return Err(err("component", "a wasm package names its component file")),
                Some(c) if !relative_path_ok(c) => {
                    return Err(err("component", "must be a relative path inside the package"))
                }
                _ => {}
            },
            Kind::Native => match &self.command {
                Some(c) if !c.is_empty() && !c[0].is_empty() => {}
                _ => return Err(err("command", "a native package names the program to start, e.g. [\"python3\", \"worker.py\"]")),
            },
        }
        if self.functions.is_empty() {
            return Err(err(
                "functions",
                "a package exports at least one function ([functions.NAME])",
            ));
        }
        for (name, f) in &self.functions {
            if !valid_identifier(name) {
                return Err(err(
                    format!("functions.{name}"),
                    "function names are identifiers: letters, digits, `_`",
                ));
            }
            let mut seen = std::collections::HashSet::new();
            let mut optional_seen = false;
            for (i, a) in f.args.iter().enumerate() {
                let field = format!("functions.{name}.args[{i}]");
                if !valid_identifier(&a.name) {
                    return Err(err(
                        format!("{field}.name"),
                        "argument names are identifiers: letters, digits, `_`",
                    ));
                }
                if !seen.insert(a.name.as_str()) {
                    return Err(err(
                        format!("{field}.name"),
                        format!("argument `{}` appears twice", a.name),
                    ));
                }
                if optional_seen && !a.optional {
                    return Err(err(
                        format!("{field}.optional"),
                        "a required argument cannot follow an optional one",
                    ));
                }
                optional_seen |= a.optional;
            }
            check_cost(name, f)?;
            check_limits(name, f)?;
        }
        Ok(())
    }

    /// The parsed version.
    pub fn semver(&self) -> semver::Version {
        semver::Version::parse(&self.version).expect("validated")
    }
}

/// serde reports a missing top-level field at path `.`; pull the field's name out of the message.
/// `max_concurrent` and `rate_per_s` are in range.
fn check_limits(name: &str, f: &FunctionSig) -> Result<(), ManifestError> {
    if f.max_concurrent
        .is_some_and(|m| m == 0 || m > MAX_CONCURRENT)
    {
        return Err(err(
            format!("functions.{name}.max_concurrent"),
            format!("1 to {MAX_CONCURRENT}"),
        ));
    }
    if f.rate_per_s.is_some_and(|r| !RATE_RANGE.contains(&r)) {
        return Err(err(
            format!("functions.{name}.rate_per_s"),
            "0.001 to 100,000 tasks per second",
        ));
    }
    Ok(())
}

/// `cost` names an argument that has a size: a number, a string, an array or an object.
fn check_cost(name: &str, f: &FunctionSig) -> Result<(), ManifestError> {
    let Some(cost) = &f.cost else {
        return Ok(());
    };
    let field = format!("functions.{name}.cost");
    match f.args.iter().find(|a| &a.name == cost) {
        None => Err(err(
            field,
            format!("`{cost}` is not an argument of `{name}`"),
        )),
        Some(a) if a.ty == ArgType::Boolean => Err(err(
            field,
            format!("`{cost}` is a boolean: a cost is a number or the length of a string, array or object"),
        )),
        Some(_) => Ok(()),
    }
}

fn missing_field(msg: &str) -> Option<String> {
    let rest = msg.split("missing field `").nth(1)?;
    Some(rest.split('`').next()?.to_string())
}

/// An argument that does not fit a signature, naming it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ArgError {
    /// `args[0]` or `kwargs.name`.
    pub field: String,
    /// The argument's name in the signature.
    pub argument: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl FunctionSig {
    /// Checks call arguments against the signature.
    pub fn check(
        &self,
        function: &str,
        args: &[Value],
        kwargs: &Map<String, Value>,
    ) -> Result<(), ArgError> {
        self.check_where(function, args, kwargs, &|_| false)
    }

    /// [`FunctionSig::check`], except that values `pending` says are not known yet (a task
    /// server's references to other tasks' answers) are not type-checked.
    pub fn check_where(
        &self,
        function: &str,
        args: &[Value],
        kwargs: &Map<String, Value>,
        pending: &dyn Fn(&Value) -> bool,
    ) -> Result<(), ArgError> {
        if args.len() > self.args.len() {
            return Err(ArgError {
                field: format!("args[{}]", self.args.len()),
                argument: None,
                message: format!(
                    "{function} takes at most {} positional argument(s), got {}",
                    self.args.len(),
                    args.len()
                ),
            });
        }
        for (i, (v, spec)) in args.iter().zip(&self.args).enumerate() {
            if !pending(v) && !spec.ty.accepts(v) {
                return Err(type_error(function, format!("args[{i}]"), spec, v));
            }
        }
        for (k, v) in kwargs {
            let Some(pos) = self.args.iter().position(|a| &a.name == k) else {
                let names: Vec<&str> = self.args.iter().map(|a| a.name.as_str()).collect();
                return Err(ArgError {
                    field: format!("kwargs.{k}"),
                    argument: Some(k.clone()),
                    message: format!(
                        "{function} has no argument `{k}` (it takes: {})",
                        names.join(", ")
                    ),
                });
            };
            if pos < args.len() {
                return Err(ArgError {
                    field: format!("kwargs.{k}"),
                    argument: Some(k.clone()),
                    message: format!(
                        "argument `{k}` of {function} is given both positionally and by keyword"
                    ),
                });
            }
            let spec = &self.args[pos];
            if !pending(v) && !spec.ty.accepts(v) {
                return Err(type_error(function, format!("kwargs.{k}"), spec, v));
            }
        }
        for (i, spec) in self.args.iter().enumerate().skip(args.len()) {
            if !spec.optional && !kwargs.contains_key(&spec.name) {
                return Err(ArgError {
                    field: format!("args[{i}]"),
                    argument: Some(spec.name.clone()),
                    message: format!(
                        "{function} is missing argument `{}` ({})",
                        spec.name,
                        spec.ty.article()
                    ),
                });
            }
        }
        Ok(())
    }

    /// JSON Schema of `args`: the arguments in order, each typed; none past the last. (A
    /// required argument may come by keyword instead, so none is required here.)
    pub fn args_schema(&self) -> Value {
        let items: Vec<Value> = self.args.iter().map(|a| a.schema()).collect();
        serde_json::json!({
            "type": "array",
            "prefixItems": items,
            "items": false,
            "maxItems": self.args.len(),
        })
    }

    /// JSON Schema of `kwargs`: each argument by name, nothing else.
    pub fn kwargs_schema(&self) -> Value {
        let props: Map<String, Value> = self
            .args
            .iter()
            .map(|a| (a.name.clone(), a.schema()))
            .collect();
        serde_json::json!({ "type": "object", "properties": props, "additionalProperties": false })
    }

    /// JSON Schema of the answer: the declared `returns` type, or anything.
    pub fn returns_schema(&self) -> Value {
        self.returns
            .map_or_else(|| serde_json::json!({}), ArgType::json_schema)
    }

    /// Whether `answer` is of the declared `returns` type (anything passes when none is
    /// declared); the error says what came back instead.
    pub fn check_return(&self, function: &str, answer: &Value) -> Result<(), String> {
        match self.returns {
            Some(ty) if !ty.accepts(answer) => Err(format!(
                "{function} declares it returns {}, but it returned {}",
                ty.article(),
                describe(answer)
            )),
            _ => Ok(()),
        }
    }
}

/// What `v` is, in words, for an error message.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(_) => "a boolean".to_string(),
        Value::Number(n) if n.is_f64() => format!("the number {n}"),
        Value::Number(n) => format!("the integer {n}"),
        Value::String(s) => format!("the string {:?}", truncate(s)),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

fn type_error(function: &str, field: String, spec: &ArgSpec, v: &Value) -> ArgError {
    ArgError {
        message: format!(
            "argument `{}` ({field}) of {function} must be {}, got {}",
            spec.name,
            spec.ty.article(),
            describe(v)
        ),
        field,
        argument: Some(spec.name.clone()),
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GOOD: &str = r#"
name = "monte-carlo-pi"
version = "1.2.0"
kind = "wasm"
component = "pi.wasm"
[functions.estimate_pi]
args = [{ name = "samples", type = "integer" }, { name = "seed", type = "integer", optional = true }]
returns = "number"
"#;

    #[test]
    fn parses_a_good_manifest() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.name, "monte-carlo-pi");
        assert_eq!(m.functions["estimate_pi"].args[0].ty, ArgType::Integer);
        let m = Manifest::parse(&format!("{GOOD}cost = \"samples\"\n")).unwrap();
        let f = &m.functions["estimate_pi"];
        assert_eq!(f.cost.as_deref(), Some("samples"));
        let kw: Map<String, Value> = [("samples".to_string(), json!(9))].into_iter().collect();
        assert_eq!(f.arg_value("samples", &[], &kw), Some((0, &json!(9))));
        assert_eq!(
            f.arg_value("samples", &[json!(7)], &kw),
            Some((0, &json!(7)))
        );
        assert_eq!(f.arg_value("seed", &[json!(7)], &Map::new()), None);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (GOOD.replace("name = \"monte-carlo-pi\"\n", ""), "name"),
            (GOOD.replace("1.2.0", "1.2"), "version"),
            (GOOD.replace("kind = \"wasm\"", "kind = \"jar\""), "kind"),
            (
                GOOD.replace("type = \"integer\" }, {", "type = \"complex\" }, {"),
                "functions.estimate_pi.args[0].type",
            ),
            (GOOD.replace("component = \"pi.wasm\"\n", ""), "component"),
            (GOOD.replace("pi.wasm", "../pi.wasm"), "component"),
            (GOOD.replace("monte-carlo-pi", "Monte_Carlo"), "name"),
            (
                format!("{GOOD}cost = \"seeds\"\n"),
                "functions.estimate_pi.cost",
            ),
            (
                format!("{GOOD}max_concurrent = 0\n"),
                "functions.estimate_pi.max_concurrent",
            ),
            (
                format!("{GOOD}rate_per_s = 1e20\n"),
                "functions.estimate_pi.rate_per_s",
            ),
            (
                format!("{GOOD}rate_per_s = nan\n"),
                "functions.estimate_pi.rate_per_s",
            ),
            (
                GOOD.replace(
                    "\"seed\", type = \"integer\"",
                    "\"seed\", type = \"boolean\"",
                ) + "cost = \"seed\"\n",
                "functions.estimate_pi.cost",
            ),
        ];
        for (text, field) in cases {
            let e = Manifest::parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn arguments_are_checked_against_the_signature() {
        let m = Manifest::parse(GOOD).unwrap();
        let f = &m.functions["estimate_pi"];
        let none = Map::new();
        assert!(f.check("estimate_pi", &[json!(1000)], &none).is_ok());
        let e = f.check("estimate_pi", &[json!("x")], &none).unwrap_err();
        assert_eq!(e.field, "args[0]");
        assert_eq!(e.argument.as_deref(), Some("samples"));
        assert!(
            e.message.contains("samples") && e.message.contains("integer"),
            "{e}"
        );
        let e = f.check("estimate_pi", &[], &none).unwrap_err();
        assert!(e.message.contains("missing argument `samples`"));
        let mut kw = Map::new();
        kw.insert("samples".into(), json!(5));
        assert!(f.check("estimate_pi", &[], &kw).is_ok());
        kw.insert("bogus".into(), json!(1));
        assert_eq!(
            f.check("estimate_pi", &[], &kw).unwrap_err().field,
            "kwargs.bogus"
        );
        assert!(f
            .check("estimate_pi", &[json!(1), json!(2), json!(3)], &none)
            .is_err());
        assert!(f.check("estimate_pi", &[json!(1.5)], &none).is_err());
    }
}
