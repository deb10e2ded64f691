"""Triton Python-backend model serving a version's TorchScript model.pt on the CPU.

The exporter copies this file into every version directory as model.py (the local config,
configs/local.pbtxt, selects backend "python"); production serves the same model.pt with the
libtorch backend. One dynamic batch = the requests' inputs concatenated, one forward, split back.
"""

import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        threads = int(os.environ.get("FER_TORCH_THREADS", "0"))
        if threads > 0:
            torch.set_num_threads(threads)
        path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(path, map_location="cpu").eval()

    def execute(self, requests):
        arrays, errors = [], []
        for request in requests:
            tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
            if tensor is None:
                arrays.append(None)
                errors.append(f"missing input tensor {self.input_name!r}")
                continue
            arrays.append(np.asarray(tensor.as_numpy(), dtype=np.float32))
            errors.append(None)
        good = [a for a in arrays if a is not None]
        outputs = []
        if good:
            batch = torch.from_numpy(np.ascontiguousarray(np.concatenate(good, axis=0)))
            with torch.inference_mode():
                logits = self.model(batch).float().numpy()
            sizes = np.cumsum([len(a) for a in good])[:-1]
            outputs = np.split(logits, sizes)
        responses = []
        it = iter(outputs)
        for array, error in zip(arrays, errors):
            if error is not None:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(error)))
                continue
            out = pb_utils.Tensor(self.output_name, np.ascontiguousarray(next(it), dtype=np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses

    def finalize(self):
        self.model = None
