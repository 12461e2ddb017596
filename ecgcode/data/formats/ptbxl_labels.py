"""PTB-XL's SCP statements as label sets: the paper's six, or PTB-XL's own aggregations.

PTB-XL (Wagner et al., Sci Data 2020) annotates every record with SCP-ECG statements
(``scp_codes`` of ``ptbxl_database.csv``); ``scp_statements.csv`` tells which statements
are diagnostic, form or rhythm statements and groups the diagnostic ones into 23
sub-classes and 5 super-classes (NORM, MI, STTC, CD, HYP). The label sets below follow
the aggregation of the PTB-XL benchmark (Strodthoff et al., IEEE JBHI 2021):

``paper``           the paper's six classes (1AVB, CRBBB, CLBBB, SBRAD, AFIB, STACH);
``superdiagnostic`` the diagnostic statements' ``diagnostic_class``;
``subdiagnostic``   the diagnostic statements' ``diagnostic_subclass``;
``diagnostic``      the diagnostic statements themselves;
``form`` / ``rhythm`` the statements flagged as form / rhythm statements;
``all``             every statement.

A statement counts as present whatever its likelihood (PTB-XL gives rhythm statements a
likelihood of 0), as in the benchmark. The classes of a set are those that occur in the
database, in alphabetical order (``paper``: the paper's order).
"""

import ast
import os

import numpy as np

from ecgcode.common import CLASSES, ECGInputError

PTBXL_STATEMENTS = "scp_statements.csv"
PTBXL_TO_CLASSES = {"1AVB": "1dAVb", "CRBBB": "RBBB", "CLBBB": "LBBB", "SBRAD": "SB",
                    "AFIB": "AF", "STACH": "ST"}
"""PTB-XL SCP statement -> our class name."""
LABEL_SETS = ("paper", "superdiagnostic", "diagnostic", "subdiagnostic", "rhythm", "form", "all")


def parse_scp_codes(codes, table_path, ecg_id):
    """The statements (dict keys) of one record's ``scp_codes`` dict-string."""
    try:
        statements = ast.literal_eval(codes)
    except (ValueError, SyntaxError):
        statements = None
    if not isinstance(statements, dict):
        raise ECGInputError(f"{table_path}: ecg_id {ecg_id}: scp_codes {codes!r} is not a dict; "
                            "fix: give the unmodified ptbxl_database.csv") from None
    return list(statements)


def read_statements(folder):
    """PTB-XL's ``scp_statements.csv`` as a DataFrame indexed by statement code."""
    # deferred: only --ptbxl-labels other than paper needs pandas (+0.3 s on predict.py --help)
    import pandas as pd

    path = os.path.join(os.fspath(folder), PTBXL_STATEMENTS)
    if not os.path.isfile(path):
        raise ECGInputError(f"{path}: not found; --ptbxl-labels other than 'paper' needs PTB-XL's "
                            "scp_statements.csv next to ptbxl_database.csv")
    frame = pd.read_csv(path, index_col=0)
    required = ["diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ECGInputError(f"{path}: missing columns {', '.join(missing)}; fix: give the "
                            "unmodified scp_statements.csv")
    return frame


def statement_map(label_set, statements):
    """Statement code -> class name for ``label_set`` (codes outside the set are absent)."""
    if label_set == "paper":
        return dict(PTBXL_TO_CLASSES)
    flagged = {"diagnostic": "diagnostic", "superdiagnostic": "diagnostic",
               "subdiagnostic": "diagnostic", "form": "form", "rhythm": "rhythm"}
    chosen = statements
    if label_set in flagged:
        chosen = statements[statements[flagged[label_set]] == 1]
    if label_set == "superdiagnostic":
        return chosen["diagnostic_class"].dropna().to_dict()
    if label_set == "subdiagnostic":
        return chosen["diagnostic_subclass"].dropna().to_dict()
    return {code: code for code in chosen.index}


def label_matrix(folder, frame, label_set, table_path):
    """(n, n_classes) 0/1 labels of the records of ``frame`` and their class names.

    Parameters
    ----------
    folder : str
        The PTB-XL folder (for ``scp_statements.csv``).
    frame : pandas.DataFrame
        ``ptbxl_database.csv`` (columns ``ecg_id`` and ``scp_codes``).
    label_set : str
        One of ``LABEL_SETS``.
    table_path : str
        ``ptbxl_database.csv``'s path, for error messages.

    Returns
    -------
    (numpy.ndarray, tuple of str)
    """
    if label_set not in LABEL_SETS:
        raise ECGInputError(f"--ptbxl-labels {label_set!r}: choose one of {', '.join(LABEL_SETS)}")
    mapping = statement_map(label_set, None if label_set == "paper" else read_statements(folder))
    present = [{mapping[code] for code in parse_scp_codes(codes, table_path, ecg_id)
                if code in mapping}
               for codes, ecg_id in zip(frame["scp_codes"], frame["ecg_id"])]
    if label_set == "paper":
        classes = tuple(CLASSES)
    else:
        classes = tuple(sorted(set().union(*present)))
        if not classes:
            raise ECGInputError(f"{table_path}: no record has a statement of the "
                                f"'{label_set}' set; check scp_statements.csv")
    labels = np.array([[name in found for name in classes] for found in present],
                      dtype=np.float32).reshape(len(present), len(classes))
    return labels, classes


def describe(label_set):
    """The ``source`` attribute written next to the labels."""
    if label_set == "paper":
        return "PTB-XL scp_codes: " + ", ".join(
            f"{code}->{name}" for code, name in PTBXL_TO_CLASSES.items())
    return f"PTB-XL scp_codes aggregated to '{label_set}' with {PTBXL_STATEMENTS}"
