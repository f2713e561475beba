//! Just enough IAM and STS for tests to prove whose credentials signed each call: which
//! principal each access key stands for, which roles exist and whom they trust, the sessions
//! `AssumeRole` issued, and (when enforced) that a principal only acts on its own account.
//!
//! Enforcement is off by default: then any call whose signature verifies may act on any
//! account. Signatures are always verified (`sigv4.rs`), with the secrets kept here.

use super::error::{SimError, UNKNOWN_KEY};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How the simulator's IAM is set up (`PUT /_sim/iam`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IamSettings {
    /// Refuse QuickSight calls by unknown keys, and by principals acting on another account.
    #[serde(default)]
    pub enforce: bool,
    /// Long-term access key id → the principal's ARN (`arn:aws:iam::ACCOUNT:role/NAME` or
    /// `...:user/NAME`); its account is the one it may act on.
    #[serde(default)]
    pub access_keys: BTreeMap<String, String>,
    /// Role ARN → who may assume it.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleTrust>,
    /// Lifetime of issued credentials, in seconds (default 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_seconds: Option<u64>,
}

/// A role's trust policy, reduced to what tests need.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleTrust {
    /// Principal ARNs that may assume the role.
    #[serde(default)]
    pub trusted: Vec<String>,
    /// The `sts:ExternalId` condition, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

/// Credentials `AssumeRole` issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
    pub assumed_role_arn: String,
    pub assumed_role_id: String,
}

/// What `AssumeRole` was asked.
#[derive(Clone, Debug)]
pub struct AssumeRoleInput<'a> {
    pub role_arn: &'a str,
    pub session_name: &'a str,
    pub external_id: Option<&'a str>,
}

/// The identity of a verified signature: the access key and, for temporary credentials, the
/// session token.
#[derive(Clone, Debug, Default)]
pub struct Caller {
    pub access_key: String,
    pub session_token: Option<String>,
}

#[derive(Default)]
pub struct Iam {
    pub settings: IamSettings,
    /// Long-term access key id → its secret: the keys the simulator verifies signatures with.
    secrets: BTreeMap<String, String>,
    /// Issued access key id → the session `AssumeRole` handed out with it.
    sessions: BTreeMap<String, Session>,
    issued: u64,
}

/// Temporary credentials as STS keeps them.
struct Session {
    secret: String,
    token: String,
    principal: String,
    /// Epoch seconds.
    expires_at: i64,
}

/// The account of an ARN (`arn:partition:service:region:ACCOUNT:resource`).
pub fn account_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

impl Iam {
    pub fn configure(&mut self, settings: IamSettings) {
        self.settings = settings;
    }

    /// Issues (or replaces) a long-term access key pair.
    pub fn add_access_key(&mut self, access_key_id: &str, secret: &str) {
        self.secrets
            .insert(access_key_id.to_string(), secret.to_string());
    }

    /// Deletes a long-term access key: signatures made with it are refused from now on.
    pub fn revoke_access_key(&mut self, access_key_id: &str) {
        self.secrets.remove(access_key_id);
    }

    /// The secret a signature by `access_key_id` must be made with, if the key was issued.
    pub fn secret_of(&self, access_key_id: &str) -> Option<String> {
        self.sessions
            .get(access_key_id)
            .map(|session| session.secret.clone())
            .or_else(|| self.secrets.get(access_key_id).cloned())
    }

    /// The principal that signed, if the key is known (issued sessions must carry their
    /// token and be unexpired).
    pub fn principal_of(&self, caller: &Caller, now: i64) -> Result<Option<String>, SimError> {
        let key = caller.access_key.as_str();
        if let Some(session) = self.sessions.get(key) {
            if caller.session_token.as_deref() != Some(session.token.as_str()) {
                return Err(SimError::unrecognized_client(UNKNOWN_KEY));
            }
            if now >= session.expires_at {
                return Err(SimError::expired_token(
                    "The security token included in the request is expired",
                ));
            }
            return Ok(Some(session.principal.clone()));
        }
        Ok(self.settings.access_keys.get(key).cloned())
    }

    /// Whether (when enforced) `caller` may call `operation` on `account`.
    pub fn authorize(
        &self,
        caller: &Caller,
        operation: &str,
        account: &str,
        now: i64,
    ) -> Result<(), SimError> {
        let principal = self.principal_of(caller, now)?;
        if !self.settings.enforce {
            return Ok(());
        }
        let principal = principal.ok_or_else(|| SimError::unrecognized_client(UNKNOWN_KEY))?;
        if account_of(&principal) == Some(account) {
            return Ok(());
        }
        Err(SimError::access_denied(format!(
            "User: {principal} is not authorized to perform: quicksight:{operation} on resource: \
             arn:aws:quicksight:*:{account}:*"
        )))
    }

    /// STS `AssumeRole`: the caller must be a principal the role trusts, with the external id
    /// the trust policy requires.
    pub fn assume_role(
        &mut self,
        caller: &Caller,
        input: &AssumeRoleInput<'_>,
        now: i64,
    ) -> Result<IssuedCredentials, SimError> {
        let principal = self
            .principal_of(caller, now)?
            .ok_or_else(|| SimError::invalid_client_token(UNKNOWN_KEY))?;
        let denied = || {
            SimError::sts_access_denied(format!(
                "User: {principal} is not authorized to perform: sts:AssumeRole on resource: {}",
                input.role_arn
            ))
        };
        let trust = self.settings.roles.get(input.role_arn).ok_or_else(denied)?;
        if !trust.trusted.contains(&principal) || trust.external_id.as_deref() != input.external_id
        {
            return Err(denied());
        }
        let role_name = input.role_arn.rsplit('/').next().unwrap_or_default();
        let account = account_of(input.role_arn).unwrap_or_default();
        self.issued += 1;
        let nonce: u64 = rand::random();
        let issued = IssuedCredentials {
            access_key_id: format!("ASIASIM{:013}", self.issued),
            secret_access_key: format!("SIMSECRET{nonce:016x}{:08}", self.issued),
            session_token: format!("SIMTOKEN{:016x}{:08}", rand::random::<u64>(), self.issued),
            expires_at: now + self.settings.session_seconds.unwrap_or(3600) as i64,
            assumed_role_arn: format!(
                "arn:aws:sts::{account}:assumed-role/{role_name}/{}",
                input.session_name
            ),
            assumed_role_id: format!("AROASIM{:013}:{}", self.issued, input.session_name),
        };
        self.sessions.insert(
            issued.access_key_id.clone(),
            Session {
                secret: issued.secret_access_key.clone(),
                token: issued.session_token.clone(),
                principal: issued.assumed_role_arn.clone(),
                expires_at: issued.expires_at,
            },
        );
        Ok(issued)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPERATOR: &str = "arn:aws:iam::999999999999:role/selfupgrade-operator";
    const ROLE_A: &str = "arn:aws:iam::111111111111:role/approver";

    fn iam() -> Iam {
        let mut iam = Iam::default();
        iam.configure(IamSettings {
            enforce: true,
            access_keys: [("AKIABASE".to_string(), OPERATOR.to_string())].into(),
            roles: [(
                ROLE_A.to_string(),
                RoleTrust {
                    trusted: vec![OPERATOR.to_string()],
                    external_id: Some("ext-a".into()),
                },
            )]
            .into(),
            session_seconds: Some(900),
        });
        iam
    }

    fn base() -> Caller {
        Caller {
            access_key: "AKIABASE".into(),
            session_token: None,
        }
    }

    fn input(external_id: Option<&str>) -> AssumeRoleInput<'_> {
        AssumeRoleInput {
            role_arn: ROLE_A,
            session_name: "op",
            external_id,
        }
    }

    #[test]
    fn an_assumed_role_acts_on_its_own_account_only() {
        let mut iam = iam();
        let issued = iam
            .assume_role(&base(), &input(Some("ext-a")), 1000)
            .expect("assumed");
        assert_eq!(
            issued.assumed_role_arn,
            "arn:aws:sts::111111111111:assumed-role/approver/op"
        );
        let session = Caller {
            access_key: issued.access_key_id.clone(),
            session_token: Some(issued.session_token.clone()),
        };
        assert!(
            iam.authorize(&session, "ListSelfUpgrades", "111111111111", 1001)
                .is_ok()
        );
        let other = iam.authorize(&session, "ListSelfUpgrades", "222222222222", 1001);
        assert_eq!(other.map_err(|e| e.code), Err("AccessDeniedException"));
        // The operator's own key acts on its own account only.
        assert!(
            iam.authorize(&base(), "ListSelfUpgrades", "111111111111", 1001)
                .is_err()
        );
    }

    #[test]
    fn the_trust_policy_and_external_id_are_enforced() {
        let mut iam = iam();
        let wrong_id = iam.assume_role(&base(), &input(Some("guess")), 1000);
        assert_eq!(wrong_id.map_err(|e| e.code), Err("AccessDenied"));
        let stranger = Caller {
            access_key: "AKIASTRANGER".into(),
            session_token: None,
        };
        assert!(
            iam.assume_role(&stranger, &input(Some("ext-a")), 1000)
                .is_err()
        );
    }

    #[test]
    fn sessions_expire_and_need_their_token() {
        let mut iam = iam();
        let issued = iam
            .assume_role(&base(), &input(Some("ext-a")), 1000)
            .expect("assumed");
        let without_token = Caller {
            access_key: issued.access_key_id.clone(),
            session_token: None,
        };
        assert!(
            iam.authorize(&without_token, "ListSelfUpgrades", "111111111111", 1001)
                .is_err()
        );
        let session = Caller {
            access_key: issued.access_key_id,
            session_token: Some(issued.session_token),
        };
        let expired = iam.authorize(&session, "ListSelfUpgrades", "111111111111", 1900);
        assert_eq!(expired.map_err(|e| e.code), Err("ExpiredTokenException"));
    }

    #[test]
    fn without_enforcement_any_signed_call_acts_anywhere() {
        let mut iam = iam();
        iam.settings.enforce = false;
        let stranger = Caller {
            access_key: "AKIASTRANGER".into(),
            session_token: None,
        };
        assert!(
            iam.authorize(&stranger, "ListSelfUpgrades", "222222222222", 1)
                .is_ok()
        );
    }
}
