"""``RecommendConfig``: the inputs of ``cpt-tasks recommend``, the replay sweep's last step (light core)."""

from __future__ import annotations

from pydantic import Field

from cpt_tasks.configs.config_base import StrictModel

# A 2% relative rise of the mean replay held-out loss. A choice, from first principles: at the held-out loss of a
# 1B-class model on web text (about 2.5 nats) it is 0.05 nats, 5% in perplexity: the replay data's ability stays
# close to intact while the domain keeps most of the tokens. And a proxy sweep can resolve it: it is several
# standard errors of the evaluation itself (a mean over 10^5 held-out tokens whose losses spread by ~2.5 nats has a
# standard error of ~0.008 nats, 0.3%). Ibrahim et al. (2024) needed about 5% replay for a weak distribution shift
# and 25% for a strong one; the sweep measures where this corpus lies.
DEFAULT_FORGETTING_TOLERANCE = 0.02


class RecommendConfig(StrictModel):
    """Arguments of ``cpt-tasks recommend``."""

    plan: str = Field(description="The sweep's plan JSON (written by `cpt-tasks plan --sweep_fractions ...`)")
    save_root: str = Field(description="Where the proxy runs went (train's and evaluate's --save_root)")
    run_id: str = Field(min_length=1, description="The sweep's pipeline run id; proxy run f trained as "
                        "<run_id>-replay-<f>")
    forgetting_tolerance: float = Field(DEFAULT_FORGETTING_TOLERANCE, gt=0, lt=1, description="The largest "
                                        "accepted forgetting: relative rise of the replay subsets' mean held-out "
                                        "loss over the proxy's starting point (0.02: 2%)")
    sweeps_root: str | None = Field(None, description="Where to leave the sweep's pointer for this corpus, mix and "
                                    "tokenizer (what replay_fraction 'recommended' reads; none: no pointer)")
    report_dir: str | None = Field(None, description="Where to write sweep-report.json/.md and sweep.png "
                                   "(default: beside the plan)")
