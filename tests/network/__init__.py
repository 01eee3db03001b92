"""Network suite: real CometBFT processes and racenet Apps on 127.0.0.1 (marker `network`)."""
