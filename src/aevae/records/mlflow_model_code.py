"""The code of every model that `aevae.records.mlflow_model.log_trained_model` logs (MLflow's models
from code: MLflow runs this file to build the model, which then reads its weights artifact)."""

from mlflow.models import set_model

from aevae.records.mlflow_model import ImagePyfunc

set_model(ImagePyfunc())
