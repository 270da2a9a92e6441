//! `labelSelector` and `fieldSelector` query parameters, parsed and matched as the API server
//! does: comma-separated requirements that must all hold.

use serde_json::Value;

/// A parsed `labelSelector`; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelRequirement>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed `fieldSelector`: `path=value` / `path!=value` on dotted paths into the object
/// (`metadata.name`, `metadata.namespace`, `spec.nodeName`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(Vec<String>, bool, String)>);

/// A selector the server refuses with 400 BadRequest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self(requirements))
    }

    /// Whether an object (its `metadata.labels`) satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.0.iter().all(|requirement| match requirement {
            LabelRequirement::In(key, values) => {
                get(key).is_some_and(|v| values.iter().any(|x| x == v))
            }
            LabelRequirement::NotIn(key, values) => {
                !get(key).is_some_and(|v| values.iter().any(|x| x == v))
            }
            LabelRequirement::Exists(key) => get(key).is_some(),
            LabelRequirement::DoesNotExist(key) => get(key).is_none(),
        })
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0_i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
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

fn parse_requirement(part: &str) -> Result<LabelRequirement, SelectorError> {
    let bad = || SelectorError(part.to_owned());
    if let Some(key) = part.strip_prefix('!') {
        return Ok(LabelRequirement::DoesNotExist(
            valid_key(key.trim()).ok_or_else(bad)?,
        ));
    }
    for (op, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = part.split_once(op) {
            let key = valid_key(key.trim()).ok_or_else(bad)?;
            let value = value.trim().to_owned();
            return Ok(if negated {
                LabelRequirement::NotIn(key, vec![value])
            } else {
                LabelRequirement::In(key, vec![value])
            });
        }
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = valid_key(words.next().unwrap_or_default().trim()).ok_or_else(bad)?;
    let Some(rest) = words.next().map(str::trim) else {
        return Ok(LabelRequirement::Exists(key));
    };
    let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
        (true, set)
    } else if let Some(set) = rest.strip_prefix("in") {
        (false, set)
    } else {
        return Err(bad());
    };
    let set = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(bad)?;
    let values = set
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect();
    Ok(if negated {
        LabelRequirement::NotIn(key, values)
    } else {
        LabelRequirement::In(key, values)
    })
}

fn valid_key(key: &str) -> Option<String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    ok.then(|| key.to_owned())
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, negated, value) = if let Some((p, v)) = part.split_once("!=") {
                (p, true, v)
            } else if let Some((p, v)) = part.split_once("==") {
                (p, false, v)
            } else if let Some((p, v)) = part.split_once('=') {
                (p, false, v)
            } else {
                return Err(SelectorError(part.to_owned()));
            };
            let path = path.trim().split('.').map(str::to_owned).collect();
            terms.push((path, negated, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Whether the object's field at each path (missing reads as "") compares as required.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(path, negated, value)| {
            let field = path.iter().try_fold(object, |v, key| v.get(key));
            let text = match field {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (text == *value) != *negated
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({ "metadata": { "name": "x", "namespace": "ns", "labels": labels } })
    }

    #[test]
    fn label_operators() {
        let obj = labelled(json!({ "app": "web", "tier": "front" }));
        for (selector, expected) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("missing!=x", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app in (db, web)", true),
            ("app notin (db,web)", false),
            ("app in (db),tier=front", false),
            ("app in (web,db), tier=front", true),
        ] {
            let parsed = LabelSelector::parse(selector).unwrap();
            assert_eq!(parsed.matches(&obj), expected, "{selector}");
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b c").is_err());
    }

    #[test]
    fn field_paths() {
        let obj =
            json!({ "metadata": { "name": "n1", "namespace": "ns" }, "spec": { "nodeName": "a" } });
        let s = |t| FieldSelector::parse(t).unwrap();
        assert!(s("metadata.name=n1").matches(&obj));
        assert!(s("metadata.name=n1,metadata.namespace==ns").matches(&obj));
        assert!(!s("metadata.name!=n1").matches(&obj));
        assert!(s("spec.nodeName=a").matches(&obj));
        assert!(s("spec.missing=").matches(&obj));
    }
}
