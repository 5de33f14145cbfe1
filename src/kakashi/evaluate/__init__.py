"""Evaluation: FID_k, FID_g, Div_k, Div_g, BAS and PFC of dances, with baselines, and the
motion quality that catches frozen, jittery and sliding dances (liveliness, freeze, jitter,
foot skating, travel: :mod:`kakashi.evaluate.quality`).

Definitions follow docs/evaluation.md (and the Metrics section of the design). Each metric
lives in its own small module and works on world positions ``(T, 17, 3)`` of the H36M-17
skeleton (metres, y up); :mod:`kakashi.evaluate.harness` cuts dances into clips and fills
the table, :mod:`kakashi.evaluate.report` writes it. :mod:`kakashi.evaluate.columns` adds
the columns a replay of the train set cannot win: held-out FID and variety (``heldout``),
style accuracy (``style``), novelty against the train set (``novelty``, on ``windows``)
and ground contact (``ground``).
"""
