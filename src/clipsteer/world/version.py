"""The world generator's version. Bump it whenever rendering, sampling or captions change; a shipped
checkpoint records the version (and a fingerprint of rendered samples) it was trained on."""

WORLD_VERSION = "1.0"
