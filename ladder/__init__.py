"""ladder: model ladders for scaling-law research.

Data flows one way: plan -> data -> model -> train -> eval -> results -> laws -> report.
Each module imports only the stages before it; `ladder.laws` and `ladder.results` know nothing of JAX.
"""

__version__ = "0.1.0"
