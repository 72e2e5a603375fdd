"""The MLflow pyfunc wrapper of a model bundle, logged as *code* rather than as a pickle.

MLflow runs this file when the model is loaded with ``mlflow.pyfunc.load_model``; the bundle
travels as the model's ``bundle`` artifact and is verified by ``load_bundle`` like any other:
signed with the key from ``AIOPS_SIGNING_KEY`` (else the key file of ``AIOPS_DATA_DIR``, default
``aiops-data``), or refused; ``AIOPS_ALLOW_UNSIGNED=1`` lets an unsigned one through for a local
experiment. Nothing in the bundle is unpickled.
``predict`` returns the detector's scores (higher is more anomalous), one column per metric.
Importing this module registers the wrapper with MLflow, so only MLflow should import it.
"""

from __future__ import annotations

import os

import mlflow
import pandas as pd

from models.bundle import load_bundle
from models.signing import trust_from_environment

LOADER = "MLflow pyfunc"


class BundleModel(mlflow.pyfunc.PythonModel):
    """Scores a metric frame with the bundle's detector."""

    def load_context(self, context) -> None:
        trust = trust_from_environment(LOADER, os.environ.get("AIOPS_DATA_DIR", "aiops-data"))
        self.bundle = load_bundle(context.artifacts["bundle"], trust=trust)

    # No type hints here: MLflow would try (and fail) to infer a signature from them.
    def predict(self, context, model_input, params=None):
        return self.bundle.model.score(pd.DataFrame(model_input))


mlflow.models.set_model(BundleModel())
