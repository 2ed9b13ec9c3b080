"""The networks every session of the server shares: the landmark encoder behind one
batcher (``--reader encoder``) and MediaPipe's networks under ONNX Runtime
(``--landmarker onnx``); each session's tracker config points at them."""

from __future__ import annotations

import logging

from engines.encoder.network import N_INPUTS, encoder_onnx
from engines.inference.backend import load_runner
from engines.inference.batcher import InferenceBatcher
from engines.tracking.landmarkers import OnnxNetworks
from engines.tracking.tracker import TrackerConfig
from server.config import ServerConfig

log = logging.getLogger("vn3d.server")


class SharedNetworks:
    def __init__(self, config: ServerConfig) -> None:
        self.reader, self.landmarker = config.reader, config.landmarker
        # one encoder for every session: requests from all sessions go out in one batch
        self.encoder_batcher: InferenceBatcher | None = None
        if config.reader == "encoder":
            runner = load_runner(encoder_onnx(), config.backend)
            self.encoder_batcher = InferenceBatcher(runner, (N_INPUTS,), max_batch=64,
                                                    max_wait_ms=2.0, name="landmark-encoder")
        # MediaPipe's networks: called by each session on a CPU, batched on a GPU
        self.onnx_networks: OnnxNetworks | None = None
        if config.landmarker == "onnx":
            self.onnx_networks = OnnxNetworks.shared(config.backend)
            log.info("onnx landmarker on %s", ", ".join(self.onnx_networks.providers))

    def tracker_config(self) -> TrackerConfig:
        """A new session's tracker settings, pointing at the shared networks."""
        return TrackerConfig(reader=self.reader, encoder_fn=self.encoder_batcher,
                             landmarker=self.landmarker, onnx_networks=self.onnx_networks)

    def close(self) -> None:
        if self.encoder_batcher is not None:
            self.encoder_batcher.close()
        if self.onnx_networks is not None:
            self.onnx_networks.close()
