"""The model and what it carries: the paper's network, its files and exports, the class
names, amplitude scale and provenance stored in them, the run folder train.py leaves, the
decision thresholds and recalibration chosen for it, and the Keras set-up (backend,
precision, TensorFlow imported quietly). Importing this package imports no TensorFlow."""
