"""Tessera's path validation measured against x509-limbo.

What is measured: ``services.validator.chain.AnchorSet.verify``, the code the
validator service runs, on limbo's cases (trusted_certs as the anchors,
untrusted_intermediates and peer_certificate as the client presents them,
at validation_time or now). Presented certificates first pass the service's
own parsing step (see ``cases.presented``), as in production.

* CLIENT cases run through AnchorSet unchanged.
* SERVER cases carry serverAuth leaves, which Tessera's client validator
  refuses on purpose. Those whose verdict does not hinge on the server's
  identity run with the purpose widened to serverAuth *in this harness
  only* (``serverauth_accepted``): the same AnchorSet.verify, with chain.py's
  own extension policies and usage rule, except that an extendedKeyUsage may
  name serverAuth where it would have to name clientAuth.
* Excluded, each with its reason in ``EXCLUDED`` or ``DEPTH_EXCLUSION``:
  hostname and SAN matching (the validator matches no hostname), the one
  case refused only for the server role, cases with CRLs (AnchorSet checks
  no CRL; Tessera's revocation goes through its own log), and depth limits
  below Tessera's fixed one. They appear as SKIPPED in the results.
* When AnchorSet.verify raises instead of answering, the case is recorded
  as refused (nothing was accepted) and listed apart in the summary.

``max_chain_depth``: AnchorSet takes no depth; it always allows
``chain.MAX_CHAIN_DEPTH`` (8) intermediates. A case with a larger limit, or
one whose path is valid within a smaller limit, measures the same thing at
depth 8 and runs; a case that expects refusal because a caller chose a
smaller limit tests an input AnchorSet does not have and is excluded.

Results are written in limbo's own result format under pytest's temporary
folder, so they can be compared with other verifiers' published results,
and a summary is printed. The assertions: no case limbo expects to FAIL is
accepted unless it is in ``KNOWN_ACCEPTED``, and no case limbo expects to
SUCCEED is refused unless it is in ``KNOWN_REFUSED``, both with the reason;
entries that no longer diverge must leave those lists.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.validator import chain
from tests.conformance import cases
from tests.conformance.cases import FAILURE, SKIPPED, SUCCESS, LimboCase

# Exclusions ---------------------------------------------------------------

# Prefixes of case ids that are not run, with the reason. A case is excluded
# by the first prefix it starts with, unless RUN_DESPITE_PREFIX names it.
EXCLUDED = {
    "crl::": (
        "tests CRL checking; AnchorSet checks no CRL (Tessera's revocation "
        "goes through its own log, checked after the path)"
    ),
    "webpki::cn::": (
        "server identity: CA/B BR 7.1.4.3 ties a server's commonName to its "
        "SAN names for hostname matching; the validator matches no hostname "
        "and takes a client's identity from the subject (DESIGN, Trust anchors)"
    ),
    "webpki::san::": (
        "server identity: matching the expected peer name against SAN "
        "patterns (RFC 6125/9525 wildcards, public suffixes); the validator "
        "matches no hostname"
    ),
    "rfc5280::ca-as-leaf-wrong-san": (
        "server identity: refused only because the SAN differs from the "
        "expected peer name"
    ),
    "rfc5280::eku::ee-wrong-eku": (
        "server role: refused because the relying party wants serverAuth from "
        "a clientAuth leaf; for a client validator that leaf is the right one"
    ),
}

# Cases under an excluded prefix whose verdict does not hinge on a peer name:
# they test the certificate profile, so they run.
RUN_DESPITE_PREFIX = {
    "webpki::san::no-san",
    "webpki::san::san-critical-with-nonempty-subject",
}

DEPTH_EXCLUSION = (
    "refused only for a caller-chosen depth below Tessera's fixed "
    f"MAX_CHAIN_DEPTH ({chain.MAX_CHAIN_DEPTH}); AnchorSet takes no depth"
)

# Known divergences --------------------------------------------------------

_AKI_SKI_PERMISSIVE = (
    "inherited from cryptography: its WebPKI CA policy lets a CA omit "
    "authorityKeyIdentifier and subjectKeyIdentifier (many older CAs do) and "
    "builds paths by name and signature; Tessera's own CAs carry both"
)
_ROOT_AKI = (
    "inherited from cryptography: it requires a CA's authorityKeyIdentifier "
    "to hold a keyIdentifier, but not CA/B BR 7.1.2.1.3's further rules for "
    "roots (no authorityCertIssuer or serial, keyIdentifier equal to the SKI)"
)
_LEAF_KEY = (
    "limbo: pedantic-webpki-subscriber-key: chain.py checks the leaf key's "
    "algorithm and minimum size (cryptography checks only keys that verify "
    "the path), not that an RSA modulus size be divisible by 8"
)
_EKU_PEDANTIC = (
    "inherited from cryptography (limbo: pedantic-webpki-eku): an "
    "extendedKeyUsage is honoured when it names the wanted purpose"
)

# Cases limbo expects to FAIL that Tessera accepts, with the reason.
KNOWN_ACCEPTED = {
    "rfc5280::aki::intermediate-missing-aki": _AKI_SKI_PERMISSIVE,
    "rfc5280::aki::cross-signed-root-missing-aki": _AKI_SKI_PERMISSIVE,
    "rfc5280::ski::root-missing-ski": _AKI_SKI_PERMISSIVE,
    "rfc5280::ski::intermediate-missing-ski": _AKI_SKI_PERMISSIVE,
    "webpki::aki::root-with-aki-authoritycertissuer": _ROOT_AKI,
    "webpki::aki::root-with-aki-authoritycertserialnumber": _ROOT_AKI,
    "webpki::aki::root-with-aki-all-fields": _ROOT_AKI,
    "webpki::aki::root-with-aki-ski-mismatch": _ROOT_AKI,
    "rfc5280::nc::permitted-dns-match-noncritical": (
        "WebPKI profile, deliberately: CA/B lets nameConstraints be "
        "non-critical (limbo: rfc5280-incompatible-with-webpki; its twin "
        "webpki::nc::permitted-dns-match-noncritical expects SUCCESS)"
    ),
    "rfc5280::pc::ica-noncritical-pc": (
        "inherited from cryptography: it does no certificate-policy "
        "processing, so a non-critical policyConstraints is ignored (a critical "
        "one refuses the path); Tessera's PKI asserts no policies"
    ),
    "rfc5280::san::underscore-dns": (
        "inherited from cryptography: a dNSName's syntax is checked only when "
        "a peer name or a name constraint is matched against it; a client "
        "validator matches no peer name"
    ),
    "rfc5280::san::ip-in-dns": (
        "inherited from cryptography: a dNSName's syntax is checked only when "
        "a peer name or a name constraint is matched against it; a client "
        "validator matches no peer name"
    ),
    "rfc5280::serial::zero": (
        "inherited from cryptography (limbo: pedantic-serial-number): it "
        "refuses negative and over-long serial numbers, not zero"
    ),
    "webpki::eku::ee-anyeku": _EKU_PEDANTIC,
    "webpki::eku::root-has-eku": _EKU_PEDANTIC,
    "webpki::eku::ee-without-eku": (
        "deliberate (limbo: pedantic-webpki-eku): RFC 5280 4.2.1.12 lets a "
        "leaf omit extendedKeyUsage and chain.py demands clientAuth only when "
        "one is present; the twin rfc5280::eku::ee-without-eku expects SUCCESS"
    ),
    "webpki::san::san-critical-with-nonempty-subject": (
        "deliberate: RFC 5280 4.2.1.6 only asks that a SAN beside a subject be "
        "non-critical (SHOULD); the MUST it sets (critical with an empty "
        "subject) is enforced, and enterprise PKIs issue client certificates "
        "with critical SANs"
    ),
    "webpki::san::no-san": (
        "deliberate: the validator accepts client certificates without SAN, "
        "naming the client by its subject (DESIGN, Trust anchors)"
    ),
    "webpki::forbidden-rsa-key-not-divisible-by-8-in-leaf": _LEAF_KEY,
    "webpki::forbidden-rsa-not-divisible-by-8-in-root": (
        "inherited from cryptography: it enforces CA/B BR 6.1.5's minimum RSA "
        "modulus (2048 bits) but not that the size be divisible by 8"
    ),
}

# Cases limbo expects to SUCCEED that Tessera refuses, with the reason.
KNOWN_REFUSED = {
    "pathlen::validation-ignores-pathlen-in-leaf": (
        "WebPKI strictness Tessera keeps: a leaf may not assert "
        "basicConstraints cA (CA/B BR 7.1.2.7.8)"
    ),
    "rfc5280::ca-as-leaf": (
        "WebPKI strictness Tessera keeps: a CA certificate may not be the leaf "
        "(CA/B BR 7.1.2.7.8; the twin webpki::ca-as-leaf expects FAILURE)"
    ),
    "rfc5280::nc::permitted-dn-match": (
        "cryptography applies no directoryName name constraints and refuses a "
        "path whose critical nameConstraints has one (fails closed)"
    ),
    "pathlen::self-issued-certs-pathlen": (
        "cryptography's path builder does not find this path through a "
        "self-issued intermediate ('signature does not match'); it fails closed"
    ),
}

# serverAuth accepted, in this harness only --------------------------------

_TLS_PURPOSES = frozenset(
    {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
)


def _check_leaf_purpose(
    policy: verification.Policy,
    certificate: x509.Certificate,
    usages: x509.ExtendedKeyUsage | None,
) -> None:
    # cryptography's WebPKI leaf rule, with serverAuth beside clientAuth.
    if usages is not None and not _TLS_PURPOSES.intersection(usages):
        raise ValueError("the leaf's extendedKeyUsage names no TLS purpose")


def _check_authority_purpose(
    policy: verification.Policy,
    certificate: x509.Certificate,
    usages: x509.ExtendedKeyUsage | None,
) -> None:
    # cryptography's WebPKI CA rule (the purpose or anyExtendedKeyUsage),
    # with serverAuth beside clientAuth.
    wanted = _TLS_PURPOSES | {ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
    if usages is not None and not wanted.intersection(usages):
        raise ValueError("a CA's extendedKeyUsage names no TLS purpose")


# Built on chain.py's own policies, so everything else stays as in production.
_SERVERAUTH_CA_POLICY = chain._CA_POLICY.may_be_present(
    x509.ExtendedKeyUsage,
    verification.Criticality.NON_CRITICAL,
    _check_authority_purpose,
)
_SERVERAUTH_EE_POLICY = chain._EE_POLICY.may_be_present(
    x509.ExtendedKeyUsage,
    verification.Criticality.NON_CRITICAL,
    _check_leaf_purpose,
)
_client_usage_problem = chain.client_usage_problem


def _serverauth_usage_problem(certificate: x509.Certificate) -> str:
    """Tessera's usage rule with serverAuth as good as clientAuth."""
    try:
        usages = certificate.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        ).value
    except x509.ExtensionNotFound:
        return _client_usage_problem(certificate)
    if ExtendedKeyUsageOID.SERVER_AUTH not in usages:
        return _client_usage_problem(certificate)

    # Only the keyUsage half of the rule is left to apply.
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return ""
    if not key_usage.digital_signature:
        return "the certificate's keyUsage lacks digitalSignature"
    return ""


@contextlib.contextmanager
def serverauth_accepted() -> Iterator[None]:
    """AnchorSet.verify, unchanged, with chain.py's purpose rules widened to
    serverAuth; only while the block runs, in this process."""
    # Patching the module's policies rather than re-implementing verify keeps
    # the measured code the production code, including checks added later.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(chain, "_CA_POLICY", _SERVERAUTH_CA_POLICY)
        patch.setattr(chain, "_EE_POLICY", _SERVERAUTH_EE_POLICY)
        patch.setattr(chain, "client_usage_problem", _serverauth_usage_problem)
        yield


# Running the cases --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """Tessera's verdict on one case, in limbo's result vocabulary."""

    case: LimboCase
    actual_result: str
    context: str
    # AnchorSet.verify raised instead of answering (counted as not accepted).
    raised: bool = False

    @property
    def disagrees(self) -> bool:
        return self.actual_result not in (SKIPPED, self.case.expected_result)


def exclusion_reason(case: LimboCase) -> str:
    """Why ``case`` is not run, or "" when it is."""
    if case.has_crls:
        return EXCLUDED["crl::"]
    if case.id not in RUN_DESPITE_PREFIX:
        for prefix, reason in EXCLUDED.items():
            if case.id.startswith(prefix):
                return reason
    depth = case.max_chain_depth
    if (
        depth is not None
        and depth < chain.MAX_CHAIN_DEPTH
        and case.expected_result == FAILURE
    ):
        return DEPTH_EXCLUSION
    return ""


def run_case(case: LimboCase, now: dt.datetime) -> Outcome:
    """Tessera's verdict on one case that is run."""
    try:
        anchors = [cases.load_pem(pem) for pem in case.trusted_certs]
        leaf, *intermediates = cases.presented(
            [
                cases.load_pem(pem).public_bytes(Encoding.DER)
                for pem in (case.peer_certificate, *case.untrusted_intermediates)
            ]
        )
    except cases.Unreadable as error:
        return Outcome(case, FAILURE, str(error))

    anchor_set = chain.AnchorSet(anchors)
    when = case.validation_time or now
    try:
        if case.validation_kind == "SERVER":
            with serverauth_accepted():
                result = anchor_set.verify(leaf, intermediates, when)
        else:
            result = anchor_set.verify(leaf, intermediates, when)
    except Exception as error:  # recorded as a finding, never as acceptance
        return Outcome(
            case,
            FAILURE,
            f"AnchorSet.verify raised {type(error).__name__}: {error}",
            raised=True,
        )
    return Outcome(case, SUCCESS if result.valid else FAILURE, result.message)


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    """Tessera's verdict on every limbo case, excluded ones as SKIPPED."""
    folder = cases.conformance_dir()
    now = dt.datetime.now(dt.UTC)
    verdicts = []
    for case in cases.limbo_cases(folder):
        reason = exclusion_reason(case)
        if reason:
            verdicts.append(Outcome(case, SKIPPED, reason))
        else:
            verdicts.append(run_case(case, now))
    return verdicts


def test_writes_results_in_limbo_format(
    outcomes: list[Outcome],
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Writes limbo's result file and prints what agreed and what did not."""
    results_file = tmp_path_factory.mktemp("limbo") / "results.json"
    results_file.write_text(
        json.dumps(
            {
                "version": 1,
                "harness": "tessera",
                "results": [
                    {
                        "id": outcome.case.id,
                        "actual_result": outcome.actual_result,
                        "context": outcome.context,
                    }
                    for outcome in outcomes
                ],
            },
            indent=1,
        )
    )

    with capsys.disabled():
        print(_summary(outcomes, results_file))

    written = json.loads(results_file.read_text())
    assert len(written["results"]) == len(outcomes)


def test_no_case_expected_to_fail_is_accepted(outcomes: list[Outcome]) -> None:
    """Every path limbo calls invalid is refused, bar the known divergences."""
    accepted = {
        outcome.case.id: outcome.context
        for outcome in outcomes
        if outcome.case.expected_result == FAILURE and outcome.actual_result == SUCCESS
    }

    unexplained = sorted(set(accepted) - set(KNOWN_ACCEPTED))
    assert not unexplained, f"Tessera accepts invalid paths: {unexplained}"


def test_refused_valid_cases_are_the_known_ones(outcomes: list[Outcome]) -> None:
    """Tessera refuses no path limbo calls valid beyond KNOWN_REFUSED."""
    refused = {
        outcome.case.id: outcome.context
        for outcome in outcomes
        if outcome.case.expected_result == SUCCESS and outcome.actual_result == FAILURE
    }

    unexplained = {
        case_id: context
        for case_id, context in refused.items()
        if case_id not in KNOWN_REFUSED
    }
    assert not unexplained, f"Tessera refuses valid paths: {unexplained}"
    assert len(refused) <= len(KNOWN_REFUSED)


def test_known_lists_name_current_divergences(outcomes: list[Outcome]) -> None:
    """Each listed case exists, runs and still diverges the way it is listed,
    so that the lists shrink when Tessera or cryptography improve."""
    by_id = {outcome.case.id: outcome for outcome in outcomes}
    listed = [(case_id, SUCCESS) for case_id in KNOWN_ACCEPTED] + [
        (case_id, FAILURE) for case_id in KNOWN_REFUSED
    ]

    stale = [
        case_id
        for case_id, listed_as in listed
        if case_id not in by_id or by_id[case_id].actual_result != listed_as
    ]
    assert not stale, f"no longer diverging, remove from the known lists: {stale}"
    missing = sorted(RUN_DESPITE_PREFIX - set(by_id))
    assert not missing, f"RUN_DESPITE_PREFIX names unknown cases: {missing}"


def _summary(outcomes: list[Outcome], results_file: Path) -> str:
    run = [outcome for outcome in outcomes if outcome.actual_result != SKIPPED]
    skipped = [outcome for outcome in outcomes if outcome.actual_result == SKIPPED]
    disagreements = [outcome for outcome in run if outcome.disagrees]
    per_kind = collections.Counter(outcome.case.validation_kind for outcome in run)
    skip_reasons = collections.Counter(
        re.split("[:;]", outcome.context)[0] for outcome in skipped
    )
    lines = [
        "",
        f"x509-limbo against AnchorSet: {len(outcomes)} cases, {len(run)} run "
        f"({per_kind['CLIENT']} CLIENT, {per_kind['SERVER']} SERVER with "
        f"serverAuth accepted), {len(skipped)} excluded",
        f"  Tessera accepted {sum(o.actual_result == SUCCESS for o in run)}, "
        f"refused {sum(o.actual_result == FAILURE for o in run)}; agreeing with "
        f"limbo: {len(run) - len(disagreements)}, disagreeing: {len(disagreements)}",
        "  excluded: "
        + ", ".join(f"{count} {why}" for why, count in skip_reasons.items()),
        f"  results in limbo's format: {results_file}",
    ]
    raised = [outcome for outcome in run if outcome.raised]
    if raised:
        lines.append(f"  AnchorSet.verify raised on {len(raised)} (not accepted):")
        lines += [f"    {o.case.id}: {o.context[:100]}" for o in raised]
    lines.append("  disagreements (expected -> Tessera, listed reason or context):")
    for outcome in disagreements:
        listed = KNOWN_ACCEPTED.get(outcome.case.id) or KNOWN_REFUSED.get(
            outcome.case.id, f"NOT LISTED: {outcome.context}"
        )
        lines.append(
            f"    {outcome.case.id}: {outcome.case.expected_result} -> "
            f"{outcome.actual_result}; {listed[:110]}"
        )
    return "\n".join(lines)
