//! # tagpipe-mapping
//!
//! The `mapping` processor reshapes events for a destination, in this order:
//!
//! 1. **filter** — keep or drop by event name (`allow_events` / `deny_events`) and by fields being
//!    present (`require_fields`) or absent (`absent_fields`); a dropped event's outcome is
//!    `skipped` with the reason;
//! 2. **event_name** — `standard` (a fixed name), `inherit` (a lookup table from the incoming
//!    name; unmapped names pass through unchanged, as the Spotify tag does, or are dropped), or
//!    `custom` (a fixed custom name). Tables: `spotify_tag` (the tag's `Page_View`, `Add_Cart`, …,
//!    the default), `spotify_api` (Spotify's API reference: `VIEW`, `ADD_TO_CART`, …), `none`;
//!    `names` adds or overrides entries;
//! 3. **operations**, in order, on dotted paths (`user_data.email_address`, `items.0.price`):
//!    `set` (a literal `value`, or `from` another field), `copy`, `rename`, `delete`.
//!
//! ```yaml
//! processors:
//!   mapping/spotify:
//!     filter:
//!       deny_events: [user_engagement, scroll]
//!     event_name:
//!       method: inherit
//!       table: spotify_tag
//!       names: { generate_lead: Lead, newsletter_signup: Sign_Up }
//!       unmapped: pass
//!     operations:
//!       - set: { path: action_source, value: WEB }
//!       - copy: { from: user_data.email_address, to: email }
//!       - rename: { from: transaction_id, to: event_id }
//!       - delete: x-ga-mp2-user_properties
//! ```
//!
//! An event the processor does not change is not copied (it stays shared with other pipelines).

mod config;
mod layer;
mod service;
mod tables;

pub use config::{
    EventNameConfig, FilterConfig, MappingConfig, NameMethod, NameTable, Operation, Unmapped,
};
pub use layer::MappingLayer;
pub use service::Mapping;
pub use tables::{SPOTIFY_API, SPOTIFY_TAG};
