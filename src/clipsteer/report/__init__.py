"""Static HTML report and feature browser of a run (`clipsteer report RUN_DIR`).

`sources` reads the run's outputs, `cards` computes feature cards in one pass over an activation store,
`images` and `plots` draw the pictures, `steering` runs the before/after examples, `render` writes
HTML, and `commands` ties them together: `report(ReportConfig(run=...)) -> Path` of index.html.
"""
