"""Training, evaluation and export of FER models (`python -m training --help`)."""
