"""A model on new ECGs (predict.py and ``predict.py --serve``): the predictor that loads
MODEL and runs it over a collection, the output tables, windows of long recordings, the
12-lead sheet, the explanations and the local HTTP service."""
