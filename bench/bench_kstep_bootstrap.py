"""A k-step bootstrap (Andrews 2002; Davidson & MacKinnon 1999) against today's refits, on the OLMo default.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/bench_kstep_bootstrap.py [--ks 1,2,3,4] [--parts step2,nd,c,single]

Each resample's refit takes at most k iterations of its production solver from the full-sample optimum (the
solver's own damped steps, each one trial pass: step 1 `nd` and `c` Newton, `newton.newton_batched`; single-step
IRLS Levenberg-Marquardt, `batched.minimize_batched`; step 2 variable projection, `sigmoid.fit_sigmoid_batched`)
instead of running to its stopping rule. One part is capped at a time, the others as in production. Printed per
part and k: that part's serial CPU-s, and the largest move, over tasks and both targets (7B-4T, 13B-5T), of the
2.5/97.5 bootstrap percentiles of every member and of the ensemble (accuracy points; loss, relative %), and of
the reported intervals (the ensemble's, united with the calibrated band) and their flags. Needs ../shared.

Decision rule (session 10, the brief's, committed before any candidate is adopted; the k = 1..4 measurements
below were seen before it was written down, and it is the brief's rule, not one fitted to them): a change that
moves any printed number is adopted only if
  1. every 7B/13B point estimate (accuracy and loss, all 8 tasks) is bit-identical;
  2. every interval endpoint moves by <= 0.3 accuracy points and <= 1% relative loss, where "every endpoint"
     is each one a user can print: the default's reported interval, and each member's bootstrap percentile
     interval (it is what `--method MEMBER` prints: a single method's interval is its bootstrap alone); the
     ensemble's own bootstrap percentiles are reported too, as the interval the default prints wherever
     the calibrated band is narrower than the bootstrap's;
  3. every flag is unchanged;
  4. bench/backtest_olmo.py still reproduces docs/laws.md's OLMo tables (the back-tests use no bootstrap).
A change that keeps every byte identical needs no rule.
"""
