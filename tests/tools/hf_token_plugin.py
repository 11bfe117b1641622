"""detect-secrets plugin for Hugging Face access tokens (detect-secrets 1.5 ships none)."""

import re

from detect_secrets.plugins.base import RegexBasedDetector


class HuggingFaceTokenDetector(RegexBasedDetector):
    """Hugging Face user access tokens: hf_ followed by 34 letters and digits."""

    secret_type = "Hugging Face Token"  # pragma: allowlist secret (the detector's name, not a secret)
    denylist = (re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),)
