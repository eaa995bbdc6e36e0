"""The nginx configuration ``tessera export nginx`` writes for a frontdoor.

nginx builds the client's path to the root itself, from the relying-party
bundle, and checks each CA in it against the CRL bundle. Every frontdoor's
intermediate chains to the same platform root, so a client that sends
another frontdoor's intermediate along with its certificate would build a
valid path; the snippet therefore also requires that the client
certificate's issuer is one of this frontdoor's intermediates (DESIGN,
"Trust anchors").
"""

from __future__ import annotations

from pathlib import Path

# Client certificate, frontdoor intermediate, platform root.
VERIFY_DEPTH = 2


def issuer_dn_pattern(subjects: list[str]) -> str:
    """A PCRE that matches exactly the given RFC 4514 names as nginx's
    ``$ssl_client_i_dn`` spells them (RFC 2253, most specific first).

    Every character but letters, digits and spaces is written as a \\xHH
    escape, so no name can end the nginx string or change the expression.
    """
    if not subjects:
        raise ValueError("the frontdoor has no intermediate to accept clients of")
    alternatives = []
    for subject in subjects:
        if not subject.isascii():
            raise ValueError(
                f"intermediate subject {subject!r} has non-ASCII characters, which "
                "nginx shows as hex escapes in $ssl_client_i_dn; this export cannot "
                "match it exactly"
            )
        alternatives.append(
            "".join(
                char if char.isalnum() or char == " " else f"\\x{ord(char):02x}"
                for char in subject
            )
        )
    return "^(?:" + "|".join(alternatives) + ")$"


def server_snippet(
    frontdoor: str, ca_bundle: Path, crl_bundle: Path, subjects: list[str]
) -> str:
    """Directives for an nginx ``server`` block that listens with ssl."""
    pattern = issuer_dn_pattern(subjects)
    listed = "\n".join(f"#   {subject}" for subject in subjects)
    return f"""# mTLS for Tessera frontdoor "{frontdoor}" ('tessera export nginx').
# Include it inside a server block that listens with ssl. The CRLs in
# {crl_bundle.name} expire at their nextUpdate: export again (or fetch
# /bundle/{frontdoor}/crl.pem) and reload nginx well before, e.g. hourly.
ssl_client_certificate {ca_bundle};
ssl_crl {crl_bundle};
ssl_verify_client on;
ssl_verify_depth {VERIFY_DEPTH};

# Only certificates issued by this frontdoor's intermediates:
{listed}
if ($ssl_client_i_dn !~ "{pattern}") {{
    return 403;
}}
"""
