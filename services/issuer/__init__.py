"""The issuer: the CA hierarchy, CSR policy, issuance and revocation."""
