"""Scaling laws: generic fitting (`fitting`), the two-step task predictor and its variants (`predict`),
step-1 power laws (`chinchilla`), step-2 sigmoids (`sigmoid`). numpy/scipy only (never JAX).

Notebook use: `cols = ladder.results.read_table(path, validate=True)`, then
`pred = ladder.laws.predict.predict(cols, {"7B": (N, D)}, method="paper")`;
`pred.results`, `pred.fits[task].step1` (a FitResult), `pred.fits[task].predict(N, D)`, `pred.table()`;
the figures are the report stage's: `ladder.plots.plot_prediction(pred, cols, "plots")`.
"""

# What `ladder predict --bootstrap` and a run config's predict.bootstrap allow (here, with no import, so the CLI's
# parser needs no numpy): 1,000 gives the intervals' percentiles to ~0.1 point; 10^9 ran for ever.
MAX_BOOTSTRAP = 100_000
