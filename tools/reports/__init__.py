"""Free-text radiology reports: the findings they state (``findings``) and the parser that reads them (``parser``).

Both the report store (retrieval of prior reports) and the training curriculum read reports, so the
parser lives here, below both.
"""
