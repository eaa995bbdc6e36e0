"""What every Tessera service shares: configuration, errors, logging, audit,
leases, the database helpers and the revocation cache."""
