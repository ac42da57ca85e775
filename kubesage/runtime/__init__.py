"""The in-container entry point, shared by every image on every target.

``python -m kubesage.runtime <contract> ...`` maps a target's conventions onto a component
function's typed arguments. One module per contract: ``local`` (task file in, result file out);
Kubeflow (executor input in, executor output file out) and SageMaker (processing and training
``/opt/ml`` layouts) are further modules beside it.
"""

COMMAND = ["python", "-m", "kubesage.runtime"]  # how every compiled step starts the runtime
