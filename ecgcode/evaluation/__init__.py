"""Evaluating a model on labelled ECGs: measures, thresholds by rule, calibration, subgroups,
the amplitude-scale sweep and the one-page report (validate.py's library)."""
