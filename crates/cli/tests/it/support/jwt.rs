//! NATS decentralized auth for the `.creds` test: an operator, an account with
//! JetStream, and a user, as JWTs signed with their NKeys (the format `nsc` writes),
//! and the user's `.creds` file.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nkeys::KeyPair;
use serde_json::{json, Value};

fn encode(mut claims: Value, issuer: &KeyPair, subject: &KeyPair, name: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    claims["iat"] = now.into();
    claims["iss"] = issuer.public_key().into();
    claims["sub"] = subject.public_key().into();
    claims["name"] = name.into();
    claims["jti"] = format!("{name}{now}").into();
    let header = URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{payload}");
    let signature = issuer.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// An operator trusting one account (JetStream enabled), and that account's user.
pub struct Decentralized {
    /// The nats-server configuration: the operator, the account preloaded.
    pub server_config: String,
    /// The user's `.creds` file content.
    pub creds: String,
}

pub fn decentralized() -> Decentralized {
    let (operator, account, user) = (KeyPair::new_operator(), KeyPair::new_account(), KeyPair::new_user());
    // JetStream needs the server's system account.
    let system = KeyPair::new_account();
    let system_jwt = encode(json!({"nats": {"type": "account", "version": 2}}), &operator, &system, "SYS");
    let operator_jwt = encode(json!({"nats": {"type": "operator", "version": 2}}), &operator, &operator, "behalf-op");
    let unlimited = json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1,
        "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1, "max_ack_pending": -1,
        "mem_max_stream_bytes": -1, "disk_max_stream_bytes": -1, "max_bytes_required": false
    });
    let account_jwt = encode(
        json!({"nats": {"type": "account", "version": 2, "limits": unlimited, "default_permissions": {"pub": {}, "sub": {}}}}),
        &operator,
        &account,
        "behalf",
    );
    let user_jwt = encode(
        json!({"nats": {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                        "issuer_account": account.public_key()}}),
        &account,
        &user,
        "behalf-role",
    );
    let server_config = format!(
        "operator: {operator_jwt}\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{\n  {acc}: {account_jwt}\n  {sys}: {system_jwt}\n}}\n",
        acc = account.public_key(),
        sys = system.public_key(),
    );
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().unwrap()
    );
    Decentralized { server_config, creds }
}
