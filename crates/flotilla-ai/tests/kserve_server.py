"""A KServe model server around a YOLO-style ONNX detector, for the remote-detection tests.

It is the real thing an operator would deploy: the PyPI `kserve` package's ModelServer
(FastAPI/uvicorn, the Open Inference Protocol v2 REST routes: /v2/models/{name}/ready and
/v2/models/{name}/infer) with a custom `kserve.Model` that runs the model with the PyPI
`onnxruntime` package on the CPU. Pre- and post-processing stay on the client (the Rust
worker letterboxes and decodes), so the model gets the FP32 NCHW tensor as sent and answers
its raw first output.

Usage: python3 kserve_server.py MODEL.onnx NAME PORT

The server exits when the process that started it goes away (a test runner that was
killed cannot leave it listening).
"""

import os
import sys
import threading
import time
import uuid

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve.errors import InvalidInput


class OnnxDetector(Model):
    """One ONNX model served under `name`; its single input is fed the request's first tensor."""

    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.path = path
        self.session = None
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            self.path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers=None, response_headers=None):
        tensor = payload.inputs[0]
        if tensor.name != self.input_name:
            raise InvalidInput(
                f"input `{tensor.name}` is not the model's input `{self.input_name}`"
            )
        data = np.ascontiguousarray(tensor.as_numpy(), dtype=np.float32)
        (out,) = self.session.run([self.output_name], {self.input_name: data})
        output = InferOutput(
            name=self.output_name, shape=list(out.shape), datatype="FP32"
        )
        output.set_data_from_numpy(out, binary_data=False)
        return InferResponse(
            response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=[output]
        )


def exit_with_parent() -> None:
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main() -> None:
    path, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    threading.Thread(target=exit_with_parent, daemon=True).start()
    model = OnnxDetector(name, path)
    ModelServer(http_port=port, workers=1, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
