//! Adds a note to a ticket, as a partner's ticketing tool would:
//!
//! ```sh
//! BEHALF_URL=http://127.0.0.1:8080 BEHALF_TOKEN=bh_… \
//!   cargo run -p behalf-client --example note -- t-01J… "the customer sent logs"
//! ```
//!
//! The command id is derived from the tool's own event id, so a crash and a rerun send
//! the same command and the server answers its first outcome (R26) — no second note.

use behalf_client::{Client, Error, Retry};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("BEHALF_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let token = std::env::var("BEHALF_TOKEN").map_err(|_| "set BEHALF_TOKEN to a partner agent's token")?;
    let mut args = std::env::args().skip(1);
    let (Some(ticket), Some(text)) = (args.next(), args.next()) else {
        return Err("usage: note TICKET_ID TEXT".into());
    };
    let client = Client::http(&url, &token)?.with_retry(Retry::default());
    let command =
        serde_json::from_value(serde_json::json!({"type": "ticket.note", "ticket_id": ticket, "text": text}))?;
    let my_event_id = format!("note-{ticket}-{}", text.len());
    match client.send_as(&command, &my_event_id, None).await {
        Ok(a) => println!(
            "noted at position {} (ticket version {}){}",
            a.position,
            a.version,
            if a.duplicate { ", sent before" } else { "" }
        ),
        Err(Error::Refused { refusal, .. }) => println!("refused: {} — {}", refusal.code, refusal.message),
        Err(e) => return Err(e.into()),
    }
    Ok(())
}
