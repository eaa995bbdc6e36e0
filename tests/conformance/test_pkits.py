"""Tessera's path validation measured against NIST PKITS.

What is measured: ``services.validator.chain.AnchorSet.verify`` with
PKITS's ``TrustAnchorRootCertificate.crt`` as the only anchor, at
2022-05-01, on every path of ``pkits.json`` (end entity plus the manifest's
other certificates as presented intermediates, read through the validator
service's own parsing step). PKITS certificates carry no SAN and no
extendedKeyUsage, both of which AnchorSet allows.

Asserted (the safety property): no path PKITS calls invalid for a *path*
reason (error class PathValidationError) is accepted, except those in
``KNOWN_ACCEPTED`` with the reason. Reported, not asserted:

* valid paths accepted and refused, refusals grouped by reason: AnchorSet
  applies the WebPKI profile, stricter than RFC 5280 in places PKITS
  exercises (policy extensions, directoryName constraints, CA certificates
  as leaves), so many valid paths are refused on purpose;
* revocation-only cases (RevokedError, InsufficientRevinfoError,
  StaleRevinfoError): path validation checks no CRL, Tessera's revocation
  goes through its own log, so these are out of scope and only counted;
* invalid paths whose invalidity comes from non-default RFC 5280 6.1.1
  initial inputs (``params``: user-initial-policy-set, initial explicit
  policy, inhibit flags), which neither AnchorSet nor cryptography takes;
  run with the default inputs they are valid, so they are only counted.
"""

from __future__ import annotations

import collections
import dataclasses

import pytest

from services.validator import chain
from tests.conformance import cases
from tests.conformance.cases import PkitsCase

PATH_ERROR = "PathValidationError"
REVOCATION_ERRORS = frozenset(
    {"RevokedError", "InsufficientRevinfoError", "StaleRevinfoError"}
)

_POLICY_PROCESSING = (
    "inherited from cryptography: it does no RFC 5280 6.1 certificate-policy "
    "processing, so the non-critical policyConstraints (requireExplicitPolicy) "
    "that makes this path invalid is ignored; a critical one refuses the "
    "path. Tessera's PKI asserts no policies"
)

# Paths PKITS calls invalid for a path reason that AnchorSet accepts, by
# manifest name, with the reason.
KNOWN_ACCEPTED = {
    "different_policies_test4": _POLICY_PROCESSING,
    "different_policies_test5": _POLICY_PROCESSING,
    "different_policies_test9": _POLICY_PROCESSING,
    "different_policies_test12": _POLICY_PROCESSING,
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """AnchorSet's verdict on one PKITS path."""

    case: PkitsCase
    accepted: bool
    reason: str

    @property
    def kind(self) -> str:
        """valid, path, initial-inputs or revocation: what PKITS expects."""
        error = self.case.error_class
        if error is None:
            return "valid"
        if error in REVOCATION_ERRORS:
            return "revocation"
        if self.case.has_initial_inputs:
            return "initial-inputs"
        return "path"


def run_case(anchor_set: chain.AnchorSet, case: PkitsCase) -> Outcome:
    """AnchorSet's verdict on one path."""
    try:
        leaf, *intermediates = cases.presented(
            [path.read_bytes() for path in (case.cert, *case.other_certs)]
        )
    except cases.Unreadable as error:
        return Outcome(case, False, str(error))

    try:
        result = anchor_set.verify(leaf, intermediates, cases.PKITS_VALIDATION_TIME)
    except Exception as error:  # recorded as a finding, never as acceptance
        return Outcome(
            case, False, f"AnchorSet.verify raised {type(error).__name__}: {error}"
        )
    return Outcome(case, result.valid, cases.short_reason(result.message))


@pytest.fixture(scope="module")
def outcomes() -> list[Outcome]:
    """AnchorSet's verdict on every PKITS path."""
    folder = cases.conformance_dir()
    anchor = cases.load_der_file(folder / "pkits" / "certs" / cases.PKITS_ANCHOR)
    anchor_set = chain.AnchorSet([anchor])
    return [run_case(anchor_set, case) for case in cases.pkits_cases(folder)]


def test_no_path_invalid_case_is_accepted(outcomes: list[Outcome]) -> None:
    """Every path PKITS calls invalid for a path reason is refused, bar the
    known divergences."""
    accepted = {
        outcome.case.name
        for outcome in outcomes
        if outcome.kind == "path" and outcome.accepted
    }

    unexplained = sorted(accepted - set(KNOWN_ACCEPTED))
    assert not unexplained, f"AnchorSet accepts invalid PKITS paths: {unexplained}"


def test_known_divergences_still_diverge(outcomes: list[Outcome]) -> None:
    """Each listed path exists, is path-invalid and is still accepted."""
    by_name = {outcome.case.name: outcome for outcome in outcomes}

    stale = [
        name
        for name in KNOWN_ACCEPTED
        if name not in by_name
        or by_name[name].kind != "path"
        or not by_name[name].accepted
    ]
    assert not stale, f"no longer diverging, remove from KNOWN_ACCEPTED: {stale}"


def test_reports_measurements(
    outcomes: list[Outcome], capsys: pytest.CaptureFixture[str]
) -> None:
    """Prints the counts per kind and the refusals of valid paths by reason."""
    per_kind: dict[str, collections.Counter[bool]] = collections.defaultdict(
        collections.Counter
    )
    for outcome in outcomes:
        per_kind[outcome.kind][outcome.accepted] += 1
    refusals = collections.Counter(
        outcome.reason
        for outcome in outcomes
        if outcome.kind == "valid" and not outcome.accepted
    )

    lines = [
        "",
        f"NIST PKITS against AnchorSet: {len(outcomes)} paths, validated at "
        f"{cases.PKITS_VALIDATION_TIME.date()}",
    ]
    labels = {
        "valid": "valid paths",
        "path": "invalid for a path reason",
        "initial-inputs": "invalid only under initial inputs (not compared)",
        "revocation": "invalid only by revocation (out of scope)",
    }
    for kind, label in labels.items():
        counts = per_kind[kind]
        lines.append(
            f"  {label}: {counts[True] + counts[False]}, accepted {counts[True]}, "
            f"refused {counts[False]}"
        )
    lines.append("  refusals of valid paths, by reason:")
    lines += [
        f"    {count:3} {reason[:120]}" for reason, count in refusals.most_common()
    ]
    lines.append("  known divergences (path-invalid, accepted):")
    lines += [f"    {name}: {why[:100]}" for name, why in KNOWN_ACCEPTED.items()]
    with capsys.disabled():
        print("\n".join(lines))

    assert sum(sum(counts.values()) for counts in per_kind.values()) == len(outcomes)
