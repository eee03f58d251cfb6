"""The code of the exported policy's MLflow pyfunc model (MLflow's "models from code": this
file is copied into the model and run by ``mlflow.pyfunc.load_model``; it imports nothing of
this project). ``predict(obs)``: float32 observations ``(batch, obs_dim)`` (an ndarray or a
DataFrame of float32 columns) -> actions ``(batch, action_dim)``, computed by the model's
``policy.onnx`` in onnxruntime."""

import os

import mlflow


class OnnxPolicy(mlflow.pyfunc.PythonModel):
    # The model's signature (a float32 tensor of (batch, obs_dim), written by
    # training.policy_export) checks the input. Without this, PythonModel.__init_subclass__
    # (mlflow/pyfunc/model.py) looks for type hints on predict and warns at every save and
    # load that there are none (its own filters override a caller's warnings filter).
    _skip_type_hint_validation = True

    def load_context(self, context):
        # onnxruntime 1.29+ reports usage to a public host from Linux as well unless told
        # not to before it starts (the launcher does the same); the user's own setting wins.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime

        self.session = onnxruntime.InferenceSession(context.artifacts["onnx"],
                                                    providers=["CPUExecutionProvider"])

    def predict(self, context, model_input, params=None):
        # MLflow's schema check runs first and hands over only a float32 (batch, obs_dim)
        # ndarray (a float32 DataFrame converted); float64, 1-D or a list never get here.
        return self.session.run(None, {"obs": model_input})[0]


mlflow.models.set_model(OnnxPolicy())
