"""Prediction serving: a registered model version (or an artifact path) loaded once and
answered over the Open Inference Protocol v2 and MLflow's `/invocations`, every request
checked against the model's input data contract, predictions logged for monitoring; batch
scoring with the same checks; a KServe manifest for clusters.

May import: registry, api and everything below them. FastAPI and uvicorn are imported only
here, lazily, so that no other command pays for them.
"""
