//! `labelSelector` and `fieldSelector` query parameters.
//!
//! Hand-written: kube-core only builds selectors from typed `LabelSelector`s and has no parser
//! for the string form clients send; this covers the grammar kubectl and kube-rs use (`=`,
//! `==`, `!=`, `in`, `notin`, `key`, `!key`).

use super::errors::ApiError;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to parse requirement: {part:?} in labelSelector {text:?}"
                ))
            })?);
        }
        Ok(Self(requirements))
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |key: &str| labels.get(key).and_then(Value::as_str);
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => label(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => label(k) != Some(v.as_str()),
            Requirement::In(k, values) => label(k).is_some_and(|l| values.iter().any(|v| v == l)),
            Requirement::NotIn(k, values) => {
                label(k).is_none_or(|l| !values.iter().any(|v| v == l))
            }
            Requirement::Exists(k) => label(k).is_some(),
            Requirement::DoesNotExist(k) => label(k).is_none(),
        })
    }
}

/// Splits on commas that are not inside `( … )`.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Option<Requirement> {
    if let Some(key) = part.strip_prefix('!') {
        return valid_key(key.trim()).then(|| Requirement::DoesNotExist(key.trim().to_string()));
    }
    for (operator, build) in [
        (
            "!=",
            Requirement::NotEquals as fn(String, String) -> Requirement,
        ),
        ("==", Requirement::Equals),
        ("=", Requirement::Equals),
    ] {
        if let Some((key, value)) = part.split_once(operator) {
            let key = key.trim();
            return valid_key(key).then(|| build(key.to_string(), value.trim().to_string()));
        }
    }
    for (operator, set_in) in [(" notin ", false), (" in ", true)] {
        if let Some((key, values)) = part.split_once(operator) {
            let values = values.trim().strip_prefix('(')?.strip_suffix(')')?;
            let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
            let key = key.trim().to_string();
            return Some(if set_in {
                Requirement::In(key, values)
            } else {
                Requirement::NotIn(key, values)
            });
        }
    }
    valid_key(part).then(|| Requirement::Exists(part.to_string()))
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value` over dotted paths into
/// the object (`metadata.name`, `involvedObject.uid`, …).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, equal, value) = if let Some((p, v)) = part.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = part.split_once("==") {
                (p, true, v)
            } else if let Some((p, v)) = part.split_once('=') {
                (p, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {part:?}"
                )));
            };
            terms.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(Self(terms))
    }

    /// The name the selector requires (`metadata.name=<name>`), as `RequiresExactMatch`
    /// finds it: a list or watch with one is authorized as a request for that name.
    pub fn exact_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(path, equal, _)| path == "metadata.name" && *equal)
            .map(|(_, _, name)| name.as_str())
    }

    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, equal, expected)| {
            let mut current = object;
            for part in path.split('.') {
                current = &current[part];
            }
            let actual = match current {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (actual == *expected) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_follow_the_kubernetes_grammar() {
        let object = json!({"metadata": {"labels": {"app": "op", "tier": "backend"}}});
        let cases = [
            ("", true),
            ("app=op", true),
            ("app==op,tier=backend", true),
            ("app!=op", false),
            ("tier in (frontend, backend)", true),
            ("tier notin (backend)", false),
            ("app", true),
            ("!app", false),
            ("missing", false),
            ("!missing", true),
        ];
        for (selector, expected) in cases {
            assert_eq!(
                LabelSelector::parse(selector)
                    .expect(selector)
                    .matches(&object),
                expected,
                "{selector}"
            );
        }
        assert!(LabelSelector::parse("a b c").is_err());
    }

    #[test]
    fn field_selectors_read_dotted_paths() {
        let object =
            json!({"metadata": {"name": "x", "namespace": "ns"}, "involvedObject": {"uid": "u1"}});
        let cases = [
            ("metadata.name=x", true),
            ("metadata.name==y", false),
            ("metadata.name!=y,metadata.namespace=ns", true),
            ("involvedObject.uid=u1", true),
        ];
        for (selector, expected) in cases {
            assert_eq!(
                FieldSelector::parse(selector)
                    .expect(selector)
                    .matches(&object),
                expected,
                "{selector}"
            );
        }
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
