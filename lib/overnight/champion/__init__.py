"""Stage compare: the champion gate, the challenge submission built from its template, the
champion record (``champion.json``) and rollback."""
