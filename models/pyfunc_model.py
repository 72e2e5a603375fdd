"""The MLflow pyfunc wrapper of a model bundle, logged as *code* rather than as a pickle.

MLflow runs this file when the model is loaded with ``mlflow.pyfunc.load_model``; the bundle
travels as the model's ``bundle`` artifact and is verified by ``load_bundle`` like any other.
``predict`` returns the detector's scores (higher is more anomalous), one column per metric.
Importing this module registers the wrapper with MLflow, so only MLflow should import it.
"""

from __future__ import annotations

import mlflow
import pandas as pd

from models.bundle import load_bundle


class BundleModel(mlflow.pyfunc.PythonModel):
    """Scores a metric frame with the bundle's detector."""

    def load_context(self, context) -> None:
        self.bundle = load_bundle(context.artifacts["bundle"])

    # No type hints here: MLflow would try (and fail) to infer a signature from them.
    def predict(self, context, model_input, params=None):
        return self.bundle.model.score(pd.DataFrame(model_input))


mlflow.models.set_model(BundleModel())
