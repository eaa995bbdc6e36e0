"""The validator: "may this client in?" for a frontdoor, on every connection."""
