"""Training jobs: one interface, run as a Kubernetes batch/v1 Job or as a local subprocess chain.

A job runs three steps in order (the same argv in both launchers):
  1. torchrun --standalone --nproc_per_node=N -m training train RECIPE --set data.path=... --out RUN_DIR
  2. python -m training export RUN_DIR/best.pt --repo MODEL_REPO --name MODEL
     (writes the next numbered version MODEL_REPO/MODEL/<v>/model.pt + metadata.json)
  3. python -m services.inference.training.announce --repo MODEL_REPO --name MODEL
     (publishes {"name", "version"} on the topic exchange `fer.models`, key `model.version.created`)
The inference service reacts to step 3 by loading the version in Triton (announce.VersionListener).

spec: what a job is and its steps; launcher: the interface both launchers share; kubernetes, local:
the launchers; store: the job records behind the RPCs; servicer: the TrainingService RPCs; announce:
step 3 and its consumer. Nothing is imported here: the training image carries only announce.py.
"""
