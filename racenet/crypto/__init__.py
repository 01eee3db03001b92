"""Keys, addresses and signatures: ed25519 accounts, bech32 `race1…` addresses, the keyring."""
