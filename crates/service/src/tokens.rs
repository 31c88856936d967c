//! Bearer tokens: issue, authenticate, revoke, list. A token is shown once, as
//! `bh_<id>_<secret>`; the store keeps the SHA-256 of the secret, never the secret.

use std::path::{Path, PathBuf};

use behalf_domain::{Code, CustomerId, PartnerId, Principal, PrincipalKind, Rejection, UserId};
use behalf_log::codec::sha256;
use behalf_log::tokens::{split_token, TokenRecord, TokenStore};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::ids::{secret, short_id};
use crate::{Refused, ServiceError};

/// What to bind a new token to (`POST /v1/tokens`, `behalf token issue`).
/// The OpenAPI document's schema is derived from it: the ids are GUIDs, `kind` one of
/// [`PrincipalKind`]'s (which ids a kind needs is checked by [`TokenSpec::principal`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(extend("allOf" = [
    {"if": {"properties": {"kind": {"const": "partner_agent"}}, "required": ["kind"]},
     "then": {"required": ["partner_id", "user_id"], "properties": {"partner_id": {"type": "string"}, "user_id": {"type": "string"}}}},
    {"if": {"properties": {"kind": {"const": "partner_sync"}}, "required": ["kind"]},
     "then": {"required": ["partner_id"], "properties": {"partner_id": {"type": "string"}}}},
    {"if": {"properties": {"kind": {"const": "customer"}}, "required": ["kind"]},
     "then": {"required": ["customer_id", "user_id"], "properties": {"customer_id": {"type": "string"}, "user_id": {"type": "string"}}}}
]))]
pub struct TokenSpec {
    #[schemars(with = "PrincipalKind")]
    pub kind: String,
    #[serde(default)]
    #[schemars(with = "Option<behalf_domain::PartnerId>")]
    pub partner_id: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<behalf_domain::UserId>")]
    pub user_id: Option<String>,
    #[serde(default)]
    #[schemars(with = "Option<behalf_domain::CustomerId>")]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
}

impl TokenSpec {
    /// The principal this spec names, or `validation.invalid` saying what is missing.
    pub fn principal(&self) -> Result<Principal, Rejection> {
        let kind = PrincipalKind::parse(&self.kind).ok_or_else(|| {
            Rejection::without_rule(
                Code::ValidationInvalid,
                format!(
                    "kind {:?} is not one of partner_agent, partner_sync, customer, vendor, auditor, admin",
                    self.kind
                ),
            )
            .with("field", "kind")
        })?;
        let guid = |field: &'static str, v: &Option<String>| -> Result<String, Rejection> {
            let v = v.as_deref().ok_or_else(|| {
                Rejection::without_rule(Code::ValidationInvalid, format!("{field} is required for a {kind} token"))
                    .with("field", field)
            })?;
            if behalf_domain::ids::is_guid(v) {
                Ok(v.to_ascii_lowercase())
            } else {
                Err(Rejection::without_rule(Code::ValidationInvalid, format!("{field} must be a GUID"))
                    .with("field", field))
            }
        };
        // An id the kind does not use must still be one (the document says so).
        for (field, v) in
            [("partner_id", &self.partner_id), ("user_id", &self.user_id), ("customer_id", &self.customer_id)]
        {
            if v.is_some() {
                guid(field, v)?;
            }
        }
        Ok(match kind {
            PrincipalKind::PartnerAgent => Principal::PartnerAgent {
                partner_id: PartnerId::new(guid("partner_id", &self.partner_id)?),
                user_id: UserId::new(guid("user_id", &self.user_id)?),
            },
            PrincipalKind::PartnerSync => {
                Principal::PartnerSync { partner_id: PartnerId::new(guid("partner_id", &self.partner_id)?) }
            }
            PrincipalKind::Customer => Principal::Customer {
                customer_id: CustomerId::new(guid("customer_id", &self.customer_id)?),
                user_id: UserId::new(guid("user_id", &self.user_id)?),
            },
            PrincipalKind::Vendor => Principal::Vendor,
            PrincipalKind::Auditor => Principal::Auditor,
            PrincipalKind::Admin => Principal::Admin,
        })
    }
}

/// A newly issued token: the secret is in `token`, shown once.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Issued {
    pub token_id: String,
    pub token: String,
}

/// A token as listed: never the secret nor its hash.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Listed {
    pub token_id: String,
    pub principal: Principal,
    pub label: String,
    pub created_at: behalf_domain::Timestamp,
    pub revoked: bool,
}

/// `GET /v1/tokens`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<Listed>,
}

/// Bearer tokens over any store (held as a trait object: nothing about tokens needs
/// to know the engine).
pub struct Tokens {
    store: Box<dyn TokenStore>,
}

fn unauthenticated() -> Rejection {
    Rejection::without_rule(Code::Unauthenticated, "missing, unknown or revoked token")
}

impl Tokens {
    pub fn new(store: impl TokenStore) -> Self {
        Tokens { store: Box::new(store) }
    }

    pub fn issue(&self, principal: Principal, label: &str, clock: &dyn Clock) -> Result<Issued, ServiceError> {
        let token_id = short_id().map_err(ServiceError::Unavailable)?;
        let secret = secret().map_err(ServiceError::Unavailable)?;
        let record = TokenRecord {
            token_id: token_id.clone(),
            secret_hash: sha256(secret.as_bytes()).to_vec(),
            principal,
            label: label.to_owned(),
            created_at: clock.now(),
            revoked: false,
        };
        self.store.put(&record)?;
        Ok(Issued { token: format!("bh_{token_id}_{secret}"), token_id })
    }

    /// The principal a presented token is bound to.
    pub fn authenticate(&self, token: &str) -> Result<Principal, Refused> {
        let Some((id, secret)) = split_token(token.trim()) else { return Err(unauthenticated().into()) };
        match self.store.get(id)? {
            Some(r) if !r.revoked && r.hash_matches(&sha256(secret.as_bytes())) => Ok(r.principal),
            Some(_) | None => Err(unauthenticated().into()),
        }
    }

    /// Revokes a token; `false` if there is no such token.
    pub fn revoke(&self, token_id: &str) -> Result<bool, ServiceError> {
        match self.store.get(token_id)? {
            Some(mut r) => {
                r.revoked = true;
                self.store.put(&r)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    pub fn list(&self) -> Result<Vec<Listed>, ServiceError> {
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(|r| Listed {
                token_id: r.token_id,
                principal: r.principal,
                label: r.label,
                created_at: r.created_at,
                revoked: r.revoked,
            })
            .collect())
    }

    /// On a store without tokens, issues one admin token into the file `path` (readable
    /// by its owner only; the data directory's `admin.token`) and returns the path.
    pub fn bootstrap_admin(&self, path: &Path, clock: &dyn Clock) -> Result<Option<PathBuf>, ServiceError> {
        if !self.store.list()?.is_empty() {
            return Ok(None);
        }
        let issued = self.issue(Principal::Admin, "bootstrap admin", clock)?;
        write_owner_only(path, &issued.token)
            .map_err(|e| ServiceError::Unavailable(format!("cannot write {}: {e}", path.display())))?;
        Ok(Some(path.to_path_buf()))
    }
}

fn write_owner_only(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}
