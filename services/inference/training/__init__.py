"""Training jobs: one interface, run as a Kubernetes batch/v1 Job or as a local subprocess chain.

A job runs four steps in order (the same argv in both launchers):
  1. torchrun --standalone --nproc_per_node=N -m training train RECIPE --set data.path=... [--set KEY=VALUE ...]
     --out RUN_DIR  (writes RUN_DIR/progress.json and a `progress:` log line every epoch)
  2. python -m training evaluate RUN_DIR/best.pt --out RUN_DIR/evaluation
     (the checkpoint chosen on the validation split, measured on the dataset's held-out test split)
  3. python -m training export RUN_DIR/best.pt --repo MODEL_REPO --name MODEL --metrics ... --attach ...
     (writes the next numbered version MODEL_REPO/MODEL/<v>/: model.pt, metadata.json with the test
     figures, confusion_matrix.png/.json, report.md, training_curve.png, history.csv, MODEL_CARD.md)
  4. python -m services.inference.training.announce --repo MODEL_REPO --name MODEL
     (publishes {"name", "version"} on the topic exchange `fer.models`, key `model.version.created`)
The inference service reacts to step 4 by loading the version in Triton (announce.VersionListener).

spec: what a job is and its steps; launcher: the interface both launchers share; kubernetes, local:
the launchers; records: the job records' table; store: the jobs behind the RPCs; servicer: the
TrainingService RPCs; announce: step 4 and its consumer. Nothing is imported here: the training image
carries only announce.py.
"""
