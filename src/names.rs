//! Kubernetes names and label values made from text the operator does not control (request ids,
//! QuickSight namespaces, decision names), valid for any input, stable, and distinct for
//! distinct inputs: where the text had to be changed or shortened to be valid, a hash of the
//! whole text is appended. The limits are apimachinery's (`IsDNS1123Subdomain`,
//! `IsValidLabelValue` in `k8s.io/apimachinery/pkg/util/validation`).

/// `IsDNS1123Subdomain`'s limit (`DNS1123SubdomainMaxLength`).
pub const MAX_NAME: usize = 253;
/// `IsValidLabelValue`'s limit (`LabelValueMaxLength`).
pub const MAX_LABEL_VALUE: usize = 63;

/// An object name (DNS-1123 subdomain: lower-case letters, digits, `-` and `.`, starting and
/// ending with a letter or digit, at most 253 characters) for `raw`.
pub fn object_name(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '.' {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    fitted(name, raw, MAX_NAME)
}

/// A label value (empty, or letters, digits, `-`, `_` and `.`, starting and ending with a letter
/// or digit, at most 63 characters) for `raw`.
pub fn label_value(raw: &str) -> String {
    let value: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    fitted(value, raw, MAX_LABEL_VALUE)
}

/// `cleaned` with its ends made alphanumeric; when that changed `raw` or it is longer than
/// `max`, shortened to make room for `-` and 16 hex digits of a hash of `raw`.
fn fitted(cleaned: String, raw: &str, max: usize) -> String {
    let trimmed = trim_ends(&cleaned);
    if trimmed == raw && trimmed.len() <= max {
        return trimmed.to_string();
    }
    let hash = format!("{:016x}", fnv1a(raw));
    let room = max - hash.len() - 1;
    let head = trim_ends(&trimmed[..trimmed.len().min(room)]);
    if head.is_empty() {
        hash
    } else {
        format!("{head}-{hash}")
    }
}

/// Without leading or trailing characters that may not begin or end a name (all are ASCII
/// here, so slicing by bytes stays on character boundaries).
fn trim_ends(text: &str) -> &str {
    text.trim_matches(|c: char| !c.is_ascii_alphanumeric())
}

/// 64-bit FNV-1a: stable across versions and platforms, as names kept in a cluster need; not
/// for anything that must resist an attacker. Six lines do not warrant a hashing crate.
pub fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_subdomain(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && trim_ends(name) == name
    }

    fn is_label_value(value: &str) -> bool {
        value.len() <= MAX_LABEL_VALUE
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && trim_ends(value) == value
    }

    #[test]
    fn valid_text_is_kept_as_it_is() {
        let uuid = "111122223333-5c1e7a52-0b7d-4b8e-9a51-2f0c1d9e0001";
        assert_eq!(object_name(uuid), uuid);
        let just_long_enough = "a".repeat(MAX_NAME);
        assert_eq!(object_name(&just_long_enough), just_long_enough);
        assert_eq!(label_value("approve-alice.v2"), "approve-alice.v2");
        assert_eq!(label_value(&"b".repeat(63)), "b".repeat(63));
        assert_eq!(label_value(""), "");
    }

    #[test]
    fn any_text_becomes_a_valid_distinct_name_and_label_value() {
        let inputs = [
            "a".repeat(MAX_NAME + 1),
            "a".repeat(MAX_NAME + 2),
            format!("{}-", "x".repeat(300)),
            "Mixed/Case".to_string(),
            "mixed-case".to_string(),
            "-.-".to_string(),
            "ünïcödé".to_string(),
            "b".repeat(64),
            "_leading".to_string(),
            "a.b".repeat(40),
        ];
        let names: std::collections::BTreeSet<String> =
            inputs.iter().map(|i| object_name(i)).collect();
        let labels: std::collections::BTreeSet<String> =
            inputs.iter().map(|i| label_value(i)).collect();
        assert_eq!(names.len(), inputs.len(), "{names:?}");
        assert_eq!(labels.len(), inputs.len(), "{labels:?}");
        for name in &names {
            assert!(is_subdomain(name), "{name}");
        }
        for label in &labels {
            assert!(is_label_value(label), "{label}");
        }
        // Stable: the same input, the same name.
        assert_eq!(object_name(&inputs[0]), object_name(&inputs[0]));
    }
}
