//! What was notified: the subjects whose notification a webhook accepted, and when. The pure
//! part of the record kept in a ConfigMap (see [`super::record`]): membership, pruning, and the
//! ConfigMap's data, held under the API server's size limit.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The ConfigMap key that holds the record.
pub const DATA_KEY: &str = "notified.json";
/// The record's largest serialized size. The API server refuses a ConfigMap whose data exceed
/// 1 MiB (`core.MaxSecretSize`, `ValidateConfigMap` in
/// `k8s.io/kubernetes/pkg/apis/core/validation`); half of it leaves room for a record merged
/// with another replica's before it is cut again.
pub const MAX_RECORD_BYTES: usize = 512 * 1024;

/// What one notification is about: the same subject is notified once.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Subject {
    /// A PENDING request, once while it waits.
    #[serde(rename = "NewRequest", rename_all = "camelCase")]
    NewRequest {
        account: String,
        quicksight_namespace: String,
        request_id: String,
    },
    /// A decision whose retries ran out, once per generation.
    #[serde(rename = "RetriesExhausted", rename_all = "camelCase")]
    RetriesExhausted { uid: String, generation: i64 },
    /// A QuickSight namespace whose approval mode drifted, once per drift.
    #[serde(rename = "ApprovalModeDrift", rename_all = "camelCase")]
    ApprovalModeDrift {
        account: String,
        quicksight_namespace: String,
    },
}

/// One recorded notification, as stored.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(flatten)]
    subject: Subject,
    /// Unix seconds.
    notified_at: i64,
}

/// The subjects notified, with when.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ledger {
    notified: BTreeMap<Subject, i64>,
}

/// A record that cannot be read: it is started afresh (some notifications may repeat).
#[derive(Debug, thiserror::Error)]
#[error("the notification record's {DATA_KEY} is not a list of notified subjects: {0}")]
pub struct UnreadableRecord(#[from] serde_json::Error);

impl Ledger {
    pub fn contains(&self, subject: &Subject) -> bool {
        self.notified.contains_key(subject)
    }

    pub fn len(&self) -> usize {
        self.notified.len()
    }

    pub fn is_empty(&self) -> bool {
        self.notified.is_empty()
    }

    pub fn record(&mut self, subject: Subject, at: i64) {
        self.notified.insert(subject, at);
    }

    /// Forgets `subject`: if it comes up again, it is notified again (a new drift).
    pub fn forget(&mut self, subject: &Subject) -> bool {
        self.notified.remove(subject).is_some()
    }

    /// Keeps the subjects `keep` holds to; returns how many went.
    pub fn retain(&mut self, keep: impl Fn(&Subject) -> bool) -> usize {
        let before = self.notified.len();
        self.notified.retain(|subject, _| keep(subject));
        before - self.notified.len()
    }

    /// Adds what `other` (another replica's record) holds, keeping the later time of each.
    pub fn merge(&mut self, other: Ledger) {
        for (subject, at) in other.notified {
            let kept = self.notified.entry(subject).or_insert(at);
            *kept = (*kept).max(at);
        }
    }

    /// The record as the ConfigMap holds it. Past [`MAX_RECORD_BYTES`], the oldest entries are
    /// left out (their subjects may be notified again); the count of those is returned.
    pub fn to_data(&self) -> (String, usize) {
        let mut entries: Vec<(&Subject, i64)> =
            self.notified.iter().map(|(s, t)| (s, *t)).collect();
        // Newest first, so that a cut drops the oldest.
        entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut kept = Vec::with_capacity(entries.len());
        let mut size = 2;
        for (subject, at) in &entries {
            let entry = Entry {
                subject: (*subject).clone(),
                notified_at: *at,
            };
            let text = serde_json::to_string(&entry).unwrap_or_default();
            if size + text.len() + 1 > MAX_RECORD_BYTES {
                break;
            }
            size += text.len() + 1;
            kept.push(text);
        }
        let left_out = entries.len() - kept.len();
        (format!("[{}]", kept.join(",")), left_out)
    }

    pub fn from_data(text: &str) -> Result<Ledger, UnreadableRecord> {
        let entries: Vec<Entry> = serde_json::from_str(text)?;
        Ok(Ledger {
            notified: entries
                .into_iter()
                .map(|e| (e.subject, e.notified_at))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str) -> Subject {
        Subject::NewRequest {
            account: "111122223333".into(),
            quicksight_namespace: "default".into(),
            request_id: id.into(),
        }
    }

    #[test]
    fn the_record_reads_back_what_it_wrote() {
        let mut ledger = Ledger::default();
        ledger.record(request("r-1"), 100);
        ledger.record(
            Subject::RetriesExhausted {
                uid: "u-1".into(),
                generation: 3,
            },
            200,
        );
        ledger.record(
            Subject::ApprovalModeDrift {
                account: "111122223333".into(),
                quicksight_namespace: "default".into(),
            },
            300,
        );
        let (data, left_out) = ledger.to_data();
        assert_eq!(left_out, 0);
        assert!(
            data.contains(r#""kind":"NewRequest","account":"111122223333","quicksightNamespace":"default","requestId":"r-1","notifiedAt":100"#),
            "{data}"
        );
        assert_eq!(Ledger::from_data(&data).expect("reads"), ledger);
        assert!(Ledger::from_data("{not json").is_err());
    }

    #[test]
    fn a_record_past_the_size_limit_drops_its_oldest_entries() {
        let mut ledger = Ledger::default();
        let long = "x".repeat(1000);
        for index in 0..1000 {
            ledger.record(request(&format!("{index:04}-{long}")), index);
        }
        let (data, left_out) = ledger.to_data();
        assert!(data.len() <= MAX_RECORD_BYTES, "{}", data.len());
        assert!(left_out > 0);
        let read = Ledger::from_data(&data).expect("reads");
        assert_eq!(read.len() + left_out, 1000);
        assert!(
            read.contains(&request(&format!("0999-{long}"))),
            "the newest stay"
        );
        assert!(
            !read.contains(&request(&format!("0000-{long}"))),
            "the oldest go"
        );
    }

    #[test]
    fn merging_keeps_both_records_and_the_later_time() {
        let mut mine = Ledger::default();
        mine.record(request("r-1"), 100);
        mine.record(request("r-2"), 100);
        let mut theirs = Ledger::default();
        theirs.record(request("r-2"), 150);
        theirs.record(request("r-3"), 90);
        mine.merge(theirs);
        assert_eq!(mine.len(), 3);
        assert_eq!(mine.notified[&request("r-2")], 150);
        assert_eq!(mine.retain(|s| s != &request("r-1")), 1);
        assert!(mine.forget(&request("r-3")) && !mine.forget(&request("r-3")));
    }
}
