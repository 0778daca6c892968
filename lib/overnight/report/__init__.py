"""Stage report: the morning report, one self-contained HTML page per night."""
