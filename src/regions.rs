//! Which AWS regions a decision may call (pure). A region is text a tenant writes, and it
//! chooses where the bound role's credentials are used (STS included) and which SDK client,
//! pacing buckets and listing scope the operator keeps; so it must be a region of the partition
//! the operator runs in, and one the decision's binding (or, for unbound accounts,
//! `--allowed-regions`) admits.

use regex::Regex;
use std::sync::LazyLock;

/// The AWS partitions, with the region patterns of the SDK's endpoint rules (`partitions.json`
/// as `aws-sdk-sts` embeds it, `regionRegex`; `\w` narrowed to the lower-case letters and digits
/// region names use).
const PARTITIONS: [(&str, &str); 8] = [
    ("aws", r"^(us|eu|ap|sa|ca|me|af|il|mx)-[a-z0-9]+-[0-9]+$"),
    ("aws-cn", r"^cn-[a-z0-9]+-[0-9]+$"),
    ("aws-us-gov", r"^us-gov-[a-z0-9]+-[0-9]+$"),
    ("aws-iso", r"^us-iso-[a-z0-9]+-[0-9]+$"),
    ("aws-iso-b", r"^us-isob-[a-z0-9]+-[0-9]+$"),
    ("aws-iso-e", r"^eu-isoe-[a-z0-9]+-[0-9]+$"),
    ("aws-iso-f", r"^us-isof-[a-z0-9]+-[0-9]+$"),
    ("aws-eusc", r"^eusc-de-[a-z0-9]+-[0-9]+$"),
];

static PATTERNS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    PARTITIONS
        .iter()
        .filter_map(|(name, pattern)| Regex::new(pattern).ok().map(|regex| (*name, regex)))
        .collect()
});

/// The partition `region` belongs to, if it is an AWS region name at all.
pub fn partition_of(region: &str) -> Option<&'static str> {
    PATTERNS
        .iter()
        .find(|(_, pattern)| pattern.is_match(region))
        .map(|(name, _)| *name)
}

/// The partition the operator runs in: its default region's (`aws` without one).
pub fn operator_partition(default_region: Option<&str>) -> &'static str {
    default_region.and_then(partition_of).unwrap_or("aws")
}

/// Why `region` may not be called by a decision whose grant admits `admitted`, with the
/// operator in `partition`; `None` when it may.
pub fn refusal(region: &str, admitted: &[String], partition: &str) -> Option<String> {
    if partition_of(region) != Some(partition) {
        return Some(format!(
            "region {region:?} is not a region of the {partition} partition the operator runs in"
        ));
    }
    if admitted.iter().any(|a| a == region) {
        return None;
    }
    let listed = match admitted.is_empty() {
        true => "none".to_string(),
        false => admitted.join(", "),
    };
    Some(format!(
        "region {region:?} is not admitted (admitted: {listed})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_belong_to_their_partition_only() {
        for (region, partition) in [
            ("us-east-1", Some("aws")),
            ("eu-west-1", Some("aws")),
            ("ap-southeast-5", Some("aws")),
            ("il-central-1", Some("aws")),
            ("cn-north-1", Some("aws-cn")),
            ("us-gov-west-1", Some("aws-us-gov")),
            ("us-iso-east-1", Some("aws-iso")),
            ("us-isob-east-1", Some("aws-iso-b")),
            ("eu-isoe-west-1", Some("aws-iso-e")),
            ("eusc-de-east-1", Some("aws-eusc")),
            ("xx-east-1", None),
            ("us-east", None),
            ("US-EAST-1", None),
            ("us-east-1.evil.example", None),
            ("", None),
        ] {
            assert_eq!(partition_of(region), partition, "{region}");
        }
        assert_eq!(operator_partition(Some("cn-northwest-1")), "aws-cn");
        assert_eq!(operator_partition(None), "aws");
    }

    #[test]
    fn a_region_is_called_only_when_admitted_and_in_the_operators_partition() {
        let admitted = ["us-east-1".to_string(), "eu-west-1".to_string()];
        assert_eq!(refusal("eu-west-1", &admitted, "aws"), None);
        let other = refusal("ap-south-1", &admitted, "aws").expect("refused");
        assert!(other.contains("admitted: us-east-1, eu-west-1"), "{other}");
        let foreign = refusal("cn-north-1", &["cn-north-1".into()], "aws").expect("refused");
        assert!(
            foreign.contains("not a region of the aws partition"),
            "{foreign}"
        );
        let none = refusal("us-east-1", &[], "aws").expect("refused");
        assert!(none.contains("admitted: none"), "{none}");
    }
}
