"""Paper artifacts (appendix A of the seeds): figures and tables per hypothesis H1-H7, the decision
gates and one self-contained HTML page.

`loaders` reads every upstream output (a missing one is `None`, never an error), `figures` and
`paper_tables` turn them into PNG/PDF and CSV/Markdown/LaTeX, `gates` reads the seeds' decision
gates as the stages decided them (never re-deriving one), `html` writes `index.html`, `browser`
checks that page in headless Chromium.
"""
