//! Parsing `variable` blocks of Terraform files (hcl-rs): type, default
//! (→ optional) and `contains([...], var.x)` validations (→ enum).

use std::collections::BTreeMap;
use std::path::Path;

use hcl::{Block, Body, Expression};

/// The type of a Terraform variable, as far as values files care.
#[derive(Debug, Clone, PartialEq)]
pub enum VarType {
    String,
    Bool,
    Number,
    List,
    Map,
    /// `any`, `object(...)`, missing type: accepted as-is.
    Any(String),
}

impl VarType {
    /// Does a JSON value (from a YAML values file) have this type?
    pub fn accepts(&self, v: &serde_json::Value) -> bool {
        match self {
            VarType::String => v.is_string(),
            VarType::Bool => v.is_boolean(),
            VarType::Number => v.is_number(),
            VarType::List => v.is_array(),
            VarType::Map => v.is_object(),
            VarType::Any(_) => true,
        }
    }

    pub fn name(&self) -> String {
        match self {
            VarType::String => "string".into(),
            VarType::Bool => "bool".into(),
            VarType::Number => "number".into(),
            VarType::List => "list".into(),
            VarType::Map => "map".into(),
            VarType::Any(s) => s.clone(),
        }
    }
}

/// One `variable "name" {}` block.
#[derive(Debug, Clone, PartialEq)]
pub struct VarSpec {
    pub name: String,
    pub ty: VarType,
    /// `Some` when the block has a `default` (the variable is optional).
    pub default: Option<serde_json::Value>,
    /// Allowed values from a `contains([...], var.name)` validation.
    pub allowed: Option<Vec<serde_json::Value>>,
    /// Patterns from `can(regex("…", var.name))` validations.
    pub patterns: Vec<String>,
}

impl VarSpec {
    pub fn required(&self) -> bool {
        self.default.is_none()
    }
}

/// Parse every `variable` block in the HCL text `src` (`file` names errors).
pub fn parse_str(src: &str, file: &Path) -> anyhow::Result<Vec<VarSpec>> {
    let body: Body = hcl::parse(src)
        .map_err(|e| anyhow::anyhow!("{}: cannot parse HCL: {e}", file.display()))?;
    Ok(body
        .blocks()
        .filter(|b| b.identifier() == "variable")
        .filter_map(var_spec)
        .collect())
}

/// Parse the `variable` blocks of one file.
pub fn parse_file(file: &Path) -> anyhow::Result<Vec<VarSpec>> {
    let src = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", file.display()))?;
    parse_str(&src, file)
}

/// Parse the `variable` blocks of every `*.tf` in `dir` (a module), by name.
pub fn parse_module(dir: &Path) -> anyhow::Result<BTreeMap<String, VarSpec>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot read module dir: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    let mut out = BTreeMap::new();
    for f in files {
        for v in parse_file(&f)? {
            out.insert(v.name.clone(), v);
        }
    }
    Ok(out)
}

fn var_spec(b: &Block) -> Option<VarSpec> {
    let name = b.labels().first()?.as_str().to_string();
    let mut ty = VarType::Any("(no type)".into());
    let mut default = None;
    for a in b.body().attributes() {
        match a.key() {
            "type" => ty = type_of(a.expr()),
            "default" => default = Some(to_json(a.expr())),
            _ => {}
        }
    }
    let mut allowed = None;
    let mut patterns = vec![];
    for v in b.body().blocks().filter(|v| v.identifier() == "validation") {
        for a in v.body().attributes().filter(|a| a.key() == "condition") {
            if let Some(list) = contains_list(a.expr(), &name) {
                allowed = Some(list);
            }
            if let Some(p) = regex_pattern(a.expr(), &name) {
                patterns.push(p);
            }
        }
    }
    Some(VarSpec {
        name,
        ty,
        default,
        allowed,
        patterns,
    })
}

fn type_of(e: &Expression) -> VarType {
    match e {
        Expression::Variable(v) => match v.as_str() {
            "string" => VarType::String,
            "bool" => VarType::Bool,
            "number" => VarType::Number,
            other => VarType::Any(other.to_string()),
        },
        Expression::FuncCall(f) => match f.name.name.as_str() {
            "list" | "set" | "tuple" => VarType::List,
            "map" | "object" => VarType::Map,
            other => VarType::Any(other.to_string()),
        },
        _ => VarType::Any(hcl::format::to_string(e).unwrap_or_default()),
    }
}

/// `contains(["a","b"], var.name)` (possibly inside `&&`/parens) → the list.
fn contains_list(e: &Expression, name: &str) -> Option<Vec<serde_json::Value>> {
    match e {
        Expression::Parenthesis(inner) => contains_list(inner, name),
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Binary(b) => {
                contains_list(&b.lhs_expr, name).or_else(|| contains_list(&b.rhs_expr, name))
            }
            _ => None,
        },
        Expression::FuncCall(f) if f.name.name.as_str() == "contains" && f.args.len() == 2 => {
            let target = hcl::format::to_string(&f.args[1]).unwrap_or_default();
            if target.trim() != format!("var.{name}") {
                return None;
            }
            match &f.args[0] {
                Expression::Array(items) => Some(items.iter().map(to_json).collect()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `can(regex("pattern", var.name))` → the pattern.
fn regex_pattern(e: &Expression, name: &str) -> Option<String> {
    let Expression::FuncCall(can) = e else {
        return None;
    };
    if can.name.name.as_str() != "can" || can.args.len() != 1 {
        return None;
    }
    let Expression::FuncCall(re) = &can.args[0] else {
        return None;
    };
    if re.name.name.as_str() != "regex" || re.args.len() != 2 {
        return None;
    }
    let target = hcl::format::to_string(&re.args[1]).unwrap_or_default();
    match (&re.args[0], target.trim() == format!("var.{name}")) {
        (Expression::String(p), true) => Some(p.clone()),
        _ => None,
    }
}

/// A literal HCL expression as JSON; non-literals become their source text.
pub fn to_json(e: &Expression) -> serde_json::Value {
    use serde_json::Value as J;
    match e {
        Expression::Null => J::Null,
        Expression::Bool(b) => J::Bool(*b),
        Expression::Number(n) => serde_json::to_value(n).unwrap_or(J::Null),
        Expression::String(s) => J::String(s.clone()),
        Expression::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Expression::Object(o) => J::Object(
            o.iter()
                .map(|(k, v)| (k.to_string().trim_matches('"').to_string(), to_json(v)))
                .collect(),
        ),
        other => J::String(format!(
            "${{{}}}",
            hcl::format::to_string(other).unwrap_or_default()
        )),
    }
}

/// Is `v` a non-literal placeholder produced by [`to_json`]?
pub fn is_expression(v: &serde_json::Value) -> Option<&str> {
    v.as_str()
        .and_then(|s| s.strip_prefix("${"))
        .and_then(|s| s.strip_suffix('}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_defaults_and_enums() {
        let src = r#"
variable "arch" {
  type = string
  validation {
    condition     = contains(["x86_64", "aarch64"], var.arch)
    error_message = "arch"
  }
}
variable "is_spot" { type = bool }
variable "user" {
  type    = string
  default = "coder"
  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.user))
    error_message = "user"
  }
}
variable "n" {
  type    = number
  default = 3
}
variable "l" {
  type    = list(string)
  default = []
}
variable "m" {
  type    = map(string)
  default = { a = "b" }
}
variable "auth" {
  type    = string
  default = "token"
  validation {
    condition     = var.auth != "" && contains(["aws-instance-identity", "token"], var.auth)
    error_message = "auth"
  }
}
"#;
        let v = parse_str(src, Path::new("v.tf")).unwrap();
        let by: BTreeMap<_, _> = v.into_iter().map(|v| (v.name.clone(), v)).collect();
        assert_eq!(by["arch"].ty, VarType::String);
        assert!(by["arch"].required());
        assert_eq!(
            by["arch"].allowed.as_ref().unwrap(),
            &vec![serde_json::json!("x86_64"), serde_json::json!("aarch64")]
        );
        assert_eq!(by["is_spot"].ty, VarType::Bool);
        assert_eq!(
            by["user"].patterns,
            vec!["^[a-z_][a-z0-9_-]{0,31}$".to_string()]
        );
        assert_eq!(by["n"].ty, VarType::Number);
        assert_eq!(by["n"].default, Some(serde_json::json!(3)));
        assert_eq!(by["l"].ty, VarType::List);
        assert_eq!(by["m"].ty, VarType::Map);
        assert_eq!(by["m"].default, Some(serde_json::json!({"a": "b"})));
        assert_eq!(by["auth"].allowed.as_ref().unwrap().len(), 2);
        assert!(!by["auth"].required());
    }
}
