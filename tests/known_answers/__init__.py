"""Known answers on real motion capture, shared by the tests and the accuracy studies.

``smoothing``: the measured 3-D pose noise of real video (``tests/video_noise.json``,
measured by studies/smoothing.py), drawn on clean mocap, and the pose filter's scores;
``root``: real mocap filmed by a virtual camera, and the root estimate's errors. The tests
assert the studies' figures (docs/benchmarks.md, docs/evaluation.md) with these; the
studies print them. Both need ``../shared/data`` (the tests skip without it).
"""
