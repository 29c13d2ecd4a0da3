//! Event-name tables shipped with tagpipe.

/// The Stape Spotify tag's `inherit` table (its default). Other names pass through unchanged.
pub const SPOTIFY_TAG: &[(&str, &str)] = &[
    ("page_view", "Page_View"),
    ("gtm.dom", "Page_View"),
    ("sign_up", "Sign_Up"),
    ("generate_lead", "Lead"),
    ("view_item", "View_Product"),
    ("add_to_cart", "Add_Cart"),
    ("begin_checkout", "Start_Checkout"),
    ("purchase", "Purchase"),
];

/// The names of Spotify's Conversions API reference (2026) for the same GA4 events.
pub const SPOTIFY_API: &[(&str, &str)] = &[
    ("page_view", "VIEW"),
    ("gtm.dom", "VIEW"),
    ("sign_up", "SIGN_UP"),
    ("generate_lead", "LEAD"),
    ("view_item", "PRODUCT"),
    ("add_to_cart", "ADD_TO_CART"),
    ("begin_checkout", "CHECK_OUT"),
    ("purchase", "PURCHASE"),
];
