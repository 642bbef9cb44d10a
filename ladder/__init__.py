"""ladder: model ladders for scaling-law research.

Data flows one way: plan -> data -> model -> train -> eval -> results -> laws -> report -> launch -> cli.
Each module imports only the stages before it (tests/test_import_flow.py); `ladder.laws` and `ladder.results`
know nothing of JAX. Start at: the model `ladder/model.py`, the trainer `ladder/train.py` (its jitted step
`ladder/step.py`), the laws `ladder/laws/` (the predictor a notebook calls: `ladder/laws/predict.py`), the
verbs `ladder/commands/`; README.md's "Where things are" has the rest.
"""

__version__ = "0.1.0"
